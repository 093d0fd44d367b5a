"""Admin for the reference data people edit rarely: services, releases, checklist templates.

Incidents and their timelines are read-only here: they change through the console's
services so that every change lands on the timeline. (Approval policies and requests are
in rollbacks.admin.)
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from incidents.models import (
    ChecklistTemplate,
    ChecklistTemplateItem,
    Incident,
    Release,
    Service,
    TimelineEntry,
)


class ReleaseInline(admin.TabularInline):
    model = Release
    extra = 0
    fields = ["version", "artifact", "shipped_at", "known_good", "known_good_by", "known_good_at"]
    readonly_fields = ["known_good_by", "known_good_at"]
    ordering = ["-shipped_at"]


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "environment", "backend", "description"]
    list_filter = ["environment", "backend"]
    search_fields = ["name", "description"]
    inlines = [ReleaseInline]


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ["service", "version", "shipped_at", "known_good", "known_good_by"]
    list_filter = ["known_good", "service__environment", "service"]
    search_fields = ["version", "artifact", "service__name"]
    readonly_fields = ["known_good_by", "known_good_at"]


class ChecklistTemplateItemInline(admin.TabularInline):
    model = ChecklistTemplateItem
    extra = 1


@admin.register(ChecklistTemplate)
class ChecklistTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "auto_attach", "position"]
    inlines = [ChecklistTemplateItemInline]


class ReadOnlyAdmin(admin.ModelAdmin):
    """An admin that shows records and changes none (they change through services)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TimelineEntryInline(admin.TabularInline):
    model = TimelineEntry
    fields = ("created_at", "kind", "actor", "actor_label", "body")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    ordering = ["id"]


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ["id", "title", "severity", "status", "environment", "commander", "detected_at"]
    list_filter = ["status", "severity", "environment"]
    search_fields = ["title", "summary"]
    inlines = [TimelineEntryInline]
