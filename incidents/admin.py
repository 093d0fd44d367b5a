"""Admin for the reference data people edit rarely: services, releases, checklist templates.

Incidents and their timelines are read-only here: they change through the console's
services so that every change lands on the timeline. (Approval policies and requests are
in rollbacks.admin.)
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest

from incidents.guards import known_good_refusal
from incidents.models import (
    ChecklistTemplate,
    ChecklistTemplateItem,
    Incident,
    Release,
    Service,
    TimelineEntry,
)
from incidents.selectors import release_suspected_by
from incidents.services import release_mark_known_good


class ReleaseInline(admin.TabularInline):
    model = Release
    extra = 0
    fields = ["version", "artifact", "shipped_at", "known_good", "known_good_by", "known_good_at"]
    # Marked on the release's own page (or the console's), which records who and when.
    readonly_fields = ["known_good", "known_good_by", "known_good_at"]
    ordering = ["-shipped_at"]


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "environment", "backend", "description"]
    list_filter = ["environment", "backend"]
    search_fields = ["name", "description"]
    inlines = [ReleaseInline]


class ReleaseAdminForm(forms.ModelForm):
    class Meta:
        model = Release
        fields = [
            "service",
            "version",
            "artifact",
            "shipped_at",
            "notes",
            "known_good",
            "known_good_reason",
            "backup",
            "backup_at",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        marking = cleaned.get("known_good") and "known_good" in self.changed_data
        if marking and cleaned.get("service") and cleaned.get("shipped_at"):
            asked = self.instance
            if asked.pk is None:  # a new release: as it would be once saved
                asked = Release(
                    service=cleaned["service"],
                    shipped_at=cleaned["shipped_at"],
                    version=cleaned.get("version", ""),
                )
            refusal = known_good_refusal(asked, (cleaned.get("known_good_reason") or "").strip())
            if refusal:
                self.add_error("known_good_reason", refusal)
            suspect = release_suspected_by(asked)
            if suspect is not None:
                self.add_error(
                    "known_good",
                    f"Open incident #{suspect.pk} suspects this release; resolve it first.",
                )
        return cleaned


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    """Staff housekeeping. Ticking "Known good" records who and when, as the dashboard's
    button does (it once answered 500: the instant was read-only and left empty)."""

    form = ReleaseAdminForm
    list_display = ["service", "version", "shipped_at", "known_good", "known_good_by"]
    list_filter = ["known_good", "service__environment", "service"]
    search_fields = ["version", "artifact", "service__name"]
    readonly_fields = ["known_good_by", "known_good_at"]

    def save_model(self, request: HttpRequest, obj: Release, form: Any, change: bool) -> None:
        if "known_good" not in form.changed_data:
            super().save_model(request, obj, form, change)
            return
        wanted = obj.known_good
        with transaction.atomic():
            # Saved as it was (a new one as not known-good), then marked by the service.
            obj.known_good = not wanted if change else False
            super().save_model(request, obj, form, change)
            release_mark_known_good(
                release=obj,
                actor=request.user,
                known_good=wanted,
                reason=obj.known_good_reason,
            )
        obj.refresh_from_db()


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
