"""The public page's feeds (Django's syndication framework): Atom and RSS for the whole page
at /status/history.atom and .rss, and per component at
/status/components/<id>/history.atom and .rss (a group's feed holds its members' news).

Entries are the incidents' published revisions and the maintenances' published updates
(MaintenanceUpdate rows), newest first, FEED_ENTRIES at most; a component's feed holds the
revisions of incidents that affect it or that set its status, the choice the subscribers'
emails make. Each entry links to its incident's or maintenance's own public page. Only
published text appears; the body is the sanitised HTML, which the generator escapes, and
characters XML cannot hold (control characters) are dropped, so the document stays valid
whatever was typed.

Ids (Atom `<id>`, RSS `<guid>`) never depend on the host a request came by, so a reader that
fetches the feed by two addresses does not see old news as new: they hang under
STATUS_PAGE_URL, else the status host (STATUS_PAGE_HOST), else a `tag:` URI naming the page id.
The feed's author is the page (Atom requires one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.syndication.views import Feed
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.feedgenerator import Atom1Feed, Rss201rev2Feed

from statuspage import conf
from statuspage.hosts import status_host
from statuspage.models import Component, MaintenanceUpdate, PublicStatus, Revision
from statuspage.selectors import FEED_ENTRIES
from statuspage.subscriber_sending import public_link
from statuspage.views import public_base_url, public_headers

# What XML 1.0 cannot hold: C0 controls but tab, newline and return; surrogates; U+FFFE/F.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` without the characters an XML document may not contain."""
    return _NOT_XML.sub("", text)


@dataclass(frozen=True)
class FeedEntry:
    title: str
    body_html: str
    path: str
    unique_id: str
    published_at: datetime


def feed_id(suffix: str = "") -> str:
    """A stable id for the page's feed ("") or a part of it ("revision-7", "component-3"):
    the same whatever host the request came by."""
    configured = conf.page_url() or (f"https://{status_host()}/" if status_host() else "")
    if configured:
        return f"{configured}#{suffix}" if suffix else configured
    tag = f"tag:backout,2026:{conf.page_id()}"
    return f"{tag}/{suffix}" if suffix else tag


def feed_entries(base: str, component: Component | None = None) -> list[FeedEntry]:
    """The newest revisions and maintenance updates (of `component`, or of every one)."""
    revisions = Revision.objects.select_related("public_incident")
    updates = MaintenanceUpdate.objects.select_related("maintenance")
    if component is not None:
        ids = {component.pk}
        if component.is_group:
            ids |= set(Component.objects.filter(group=component).values_list("pk", flat=True))
        revisions = revisions.filter(
            Q(public_incident__components__in=ids)
            | Q(component_statuses__has_any_keys=[str(pk) for pk in ids])
        ).distinct()
        updates = updates.filter(maintenance__components__in=ids).distinct()
    entries = [
        FeedEntry(
            title=f"{revision.name}: {PublicStatus(revision.status).label}",
            body_html=revision.body_html,
            path=public_link("status_incident", revision.public_incident_id, base=base),
            unique_id=feed_id(f"revision-{revision.pk}"),
            published_at=revision.published_at,
        )
        for revision in revisions.order_by("-published_at", "-id")[:FEED_ENTRIES]
    ]
    entries += [
        FeedEntry(
            title=f"{update.maintenance.name}: {update.get_status_display()} (maintenance)",
            body_html=update.body_html,
            path=public_link("status_maintenance_public", update.maintenance_id, base=base),
            unique_id=feed_id(f"maintenance-update-{update.pk}"),
            published_at=update.published_at,
        )
        for update in updates.order_by("-published_at", "-id")[:FEED_ENTRIES]
    ]
    entries.sort(key=lambda entry: (entry.published_at, entry.unique_id), reverse=True)
    return entries[:FEED_ENTRIES]


@dataclass(frozen=True)
class FeedSubject:
    """What one request's feed is about: the page's address and the component, if any (kept
    per request, not on the shared feed instance)."""

    base: str
    component: Component | None


class PageAtomFeed(Feed):  # type: ignore[type-arg]
    """Every published update of the page, as Atom."""

    feed_type: type[Any] = Atom1Feed
    language = "en"
    login_required = False  # public (LoginRequiredMiddleware reads this on the view)
    item_guid_is_permalink = False

    def __call__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return public_headers(super().__call__(request, *args, **kwargs))

    def get_object(self, request: HttpRequest, *args: Any, **kwargs: Any) -> FeedSubject:
        return FeedSubject(public_base_url(request), None)

    def title(self, obj: FeedSubject) -> str:
        return xml_text(conf.page_name())

    def link(self, obj: FeedSubject) -> str:
        if obj.component is not None:
            return f"{obj.base}#component-{obj.component.pk}"
        return obj.base

    def feed_guid(self, obj: FeedSubject) -> str:
        return feed_id(f"component-{obj.component.pk}" if obj.component is not None else "")

    def author_name(self, obj: FeedSubject) -> str:
        return xml_text(conf.page_name())

    def description(self, obj: FeedSubject) -> str:
        return "Published status updates and maintenances"

    def items(self, obj: FeedSubject) -> list[FeedEntry]:
        return feed_entries(obj.base, obj.component)

    def item_title(self, item: FeedEntry) -> str:
        return xml_text(item.title)

    def item_description(self, item: FeedEntry) -> str:
        return xml_text(item.body_html)

    def item_link(self, item: FeedEntry) -> str:
        return item.path

    def item_guid(self, item: FeedEntry) -> str:
        return item.unique_id

    def item_pubdate(self, item: FeedEntry) -> datetime:
        return item.published_at

    def item_updateddate(self, item: FeedEntry) -> datetime:
        return item.published_at


class PageRssFeed(PageAtomFeed):
    """Every published update of the page, as RSS 2.0."""

    feed_type = Rss201rev2Feed


class ComponentAtomFeed(PageAtomFeed):
    """The updates of the incidents and maintenances that touched one component, as Atom."""

    def get_object(self, request: HttpRequest, *args: Any, **kwargs: Any) -> FeedSubject:
        component = Component.objects.filter(pk=kwargs["component_id"]).first()
        if component is None:
            raise Http404("No component has this id.")
        return FeedSubject(public_base_url(request), component)

    def title(self, obj: FeedSubject) -> str:
        name = obj.component.name if obj.component is not None else ""
        return xml_text(f"{conf.page_name()}: {name}")

    def description(self, obj: FeedSubject) -> str:
        name = obj.component.name if obj.component is not None else ""
        return xml_text(f"Published updates and maintenances of {name}")


class ComponentRssFeed(ComponentAtomFeed):
    """The updates of one component, as RSS 2.0."""

    feed_type = Rss201rev2Feed
