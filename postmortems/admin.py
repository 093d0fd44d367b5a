"""Post-mortems in the admin, read-only: changes go through postmortems.services so that
each one is recorded as a revision."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from postmortems.models import ActionItem, Postmortem, PostmortemRevision


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ActionItemInline(ReadOnly, admin.TabularInline):
    model = ActionItem
    fields = ("title", "owner", "due_on", "done_at", "done_by", "ticket_url")
    extra = 0


class RevisionInline(ReadOnly, admin.TabularInline):
    model = PostmortemRevision
    fields = ("number", "action", "author", "at", "changes", "note")
    extra = 0


@admin.register(Postmortem)
class PostmortemAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("incident", "state", "revision", "updated_at", "published_at")
    list_filter = ("state",)
    search_fields = ("incident__title", "summary", "root_cause")
    inlines = (ActionItemInline, RevisionInline)


@admin.register(ActionItem)
class ActionItemAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("title", "owner", "due_on", "done_at", "postmortem")
    list_filter = ("done_at",)
    search_fields = ("title",)
