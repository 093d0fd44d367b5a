"""API tokens: made, shown once, kept as a SHA-256 digest, revoked (api.models.ApiToken).

A token reads `bko_<prefix>_<secret>`: the prefix is shown in lists and logs to tell tokens
apart, the secret (256 bits) is never stored. A digest of a high-entropy secret needs no
slow hash: guessing is the secret's entropy, not the hash's speed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from api.models import SCOPES, SERVICES_WRITE, STATUS_PAGE_WRITE, ApiToken
from incidents.errors import DomainError, PermissionDenied

TOKEN_START = "bko_"
NAME_MAX = 100
# Tokens a person may hold at once (revoked ones do not count).
TOKENS_PER_USER = 25
MAX_DAYS = 366
# last_used_at is written at most this often, so a busy pipeline is not a write per call.
LAST_USED_EVERY = timedelta(minutes=1)


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def clean_name(name: str) -> str:
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    if not cleaned:
        raise DomainError("Name the token (what uses it, e.g. “deploy pipeline”).")
    if len(cleaned) > NAME_MAX:
        raise DomainError(f"A token's name is at most {NAME_MAX} characters.")
    return cleaned


def clean_scopes(scopes: Iterable[str]) -> list[str]:
    chosen = sorted(set(scopes))
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown:
        raise DomainError(
            f"Unknown scope {', '.join(unknown)}; the scopes are {', '.join(SCOPES)}."
        )
    if not chosen:
        raise DomainError("Give the token at least one scope.")
    return chosen


TOKEN_TEXT = re.compile(r"^bko_([0-9a-f]{8})_[A-Za-z0-9_-]{32,100}$")


# What a scope lets a token do needs its owner to hold the permission the console's own
# pages ask for the same: a token never does more than its owner could by hand.
SCOPE_PERMISSIONS = {
    "read": "incidents.view_incident",
    "releases:write": "incidents.change_release",
    "incidents:write": "incidents.add_note",
    "runs:write": "incidents.command_incident",
    # Alerts open incidents, and may start an automatic rollback.
    "alerts:write": "incidents.add_incident",
    # Importing services, and setting their automatic rollback and signal queries.
    SERVICES_WRITE: "incidents.command_incident",
    # The support lead's pages: components, maintenances, update templates, subscribers.
    STATUS_PAGE_WRITE: "incidents.edit_status_page",
}
# Staff import services on the console's page without holding a role
# (rollbacks.services.discovery.may_discover); each operation still checks its own.
STAFF_SCOPES = {SERVICES_WRITE}


def scope_allowed(user: User, scope: str) -> bool:
    """Whether `user` may hold `scope`: they could do its operations by hand."""
    return user.has_perm(SCOPE_PERMISSIONS[scope]) or (user.is_staff and scope in STAFF_SCOPES)


def token_create(
    *,
    user: User,
    name: str,
    scopes: Iterable[str],
    days: int | None = None,
    text: str | None = None,
    replace: bool = False,
) -> tuple[ApiToken, str]:
    """Make a token for `user`; return it and its secret text, which is never shown again.

    `text` adopts a token made elsewhere (a receiver provisioned with it first, as the demo's
    Alertmanager is); `replace` revokes the user's live tokens of the same name."""
    if text is not None and not TOKEN_TEXT.match(text):
        raise DomainError("A token's text reads bko_<8 hex digits>_<at least 32 characters>.")
    if not user.is_active:
        raise PermissionDenied("A deactivated account cannot hold API tokens.")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise DomainError(f"A token lasts 1 to {MAX_DAYS} days, or until it is revoked.")
    cleaned_name, cleaned_scopes = clean_name(name), clean_scopes(scopes)
    beyond = [s for s in cleaned_scopes if not scope_allowed(user, s)]
    if beyond:
        raise PermissionDenied(
            f"Your roles do not allow the scope {', '.join(beyond)}: a token does only what its "
            "owner may."
        )
    if text is None:
        prefix = secrets.token_hex(4)
        text = f"{TOKEN_START}{prefix}_{secrets.token_urlsafe(32)}"
    else:
        prefix = text.split("_")[1]
    with transaction.atomic():
        User.objects.select_for_update().get(pk=user.pk)
        if replace:
            ApiToken.objects.filter(user=user, name=cleaned_name, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
        if ApiToken.objects.filter(prefix=prefix).exists():
            raise DomainError("A token with that prefix exists already; make a new one.")
        held = ApiToken.objects.filter(user=user, revoked_at__isnull=True).count()
        if held >= TOKENS_PER_USER:
            raise DomainError(
                f"You hold {held} tokens, the most allowed; revoke one you no longer use."
            )
        token = ApiToken.objects.create(
            user=user,
            name=cleaned_name,
            prefix=prefix,
            digest=digest_of(text),
            scopes=cleaned_scopes,
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
    return token, text


def token_revoke(*, token: ApiToken, actor: User) -> ApiToken:
    """Revoke a token: its owner may, and staff may revoke anyone's."""
    if actor.pk != token.user_id and not actor.is_staff:
        raise PermissionDenied("Only its owner or staff may revoke a token.")
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
    return locked


def token_authenticate(text: str) -> ApiToken | None:
    """The active token `text` stands for, with its owner (who must be active), or None."""
    if not text.startswith(TOKEN_START) or len(text) > 200:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=digest_of(text)).first()
    if token is None or not token.active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
