"""Lists a page at a time: the incident list, the post-mortems and their open action items.

`page_of` reads the page number from a query parameter and answers PageError (the views turn
it into a 400 naming the parameter) for anything but a page that exists; `includes/pager.html`
shows where the reader is and links to the neighbouring pages, keeping the list's filters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

PAGE_SIZE = 50
_NUMBER = re.compile(r"[0-9]{1,9}")


class PageError(ValueError):
    """A page number that is not one of the list's pages."""


@dataclass(frozen=True)
class ListPage:
    """One page of a list, with the query strings of its neighbours (the list's other
    parameters kept; empty when there is no such page)."""

    page: Page
    previous_query: str
    next_query: str

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.page)

    @classmethod
    def empty(cls) -> ListPage:
        """What a list shows when the page asked for is not one of its pages."""
        return cls(Paginator([], PAGE_SIZE).page(1), "", "")


def page_of(
    request: HttpRequest,
    items: QuerySet[Any] | Sequence[Any],
    *,
    parameter: str = "page",
    size: int | None = None,
) -> ListPage:
    paginator = Paginator(items, size or PAGE_SIZE, allow_empty_first_page=True)
    wanted = request.GET.get(parameter, "1")
    if not _NUMBER.fullmatch(wanted) or not 1 <= int(wanted) <= paginator.num_pages:
        raise PageError(
            f"{parameter}: must be a page number from 1 to {paginator.num_pages} "
            f"({_excerpt(wanted)} given)"
        )
    page = paginator.page(int(wanted))

    def query(number: int) -> str:
        kept = request.GET.copy()
        kept[parameter] = str(number)
        return "?" + kept.urlencode()

    return ListPage(
        page,
        query(page.previous_page_number()) if page.has_previous() else "",
        query(page.next_page_number()) if page.has_next() else "",
    )


def _excerpt(text: str) -> str:
    shown = "".join(char if char.isprintable() else "�" for char in text[:20])
    return repr(shown + ("…" if len(text) > 20 else ""))
