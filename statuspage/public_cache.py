"""The generation of the public page's cache (statuspage.selectors.cached_public): moving it
on drops every cached copy of the page and its JSON at once."""

from __future__ import annotations

import logging
import uuid

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

PUBLIC_CACHE_KEY = "statuspage:public"


def public_cache_invalidate() -> None:
    """A new generation: every cached copy of the public page and its JSON is dropped."""
    try:
        cache.set(PUBLIC_CACHE_KEY, uuid.uuid4().hex, None)
    except Exception:  # the page then serves a few seconds' old copy; never fail a change
        logger.warning("could not clear the status page cache", exc_info=True)


def public_changed() -> None:
    """What the public sees changes in this transaction: drop the cache now and again after
    commit (a reader in between may have cached the old state)."""
    public_cache_invalidate()
    transaction.on_commit(public_cache_invalidate)
