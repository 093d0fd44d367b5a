"""Admin: default texts are edited here, and components for repairs (the support lead has a
page of their own for them); revisions, notices and deliveries are shown read-only (they
change through the status desk's services)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from incidents.admin import ReadOnlyAdmin
from statuspage.models import Component, Delivery, MessageTemplate, Notice, Revision
from statuspage.status_changes import component_history_start, component_status_set


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    # The support lead's page (statuspage.component_views) checks more; this one serves
    # repairs and setting a state by hand (maintenance).
    list_display = ["name", "is_group", "group", "position", "status", "updated_at"]
    list_filter = ["is_group", "group"]
    fields = [
        "name",
        "description",
        "is_group",
        "group",
        "position",
        "only_show_if_degraded",
        "services",
        "status",
    ]
    filter_horizontal = ["services"]

    def save_model(self, request: HttpRequest, obj: Component, form: Any, change: bool) -> None:
        # A state set here is recorded in the uptime history like any other change.
        status = obj.status
        if change:
            obj.status = Component.objects.values_list("status", flat=True).get(pk=obj.pk)
        super().save_model(request, obj, form, change)
        if not change:
            component_history_start(obj)
        elif not obj.is_group:
            component_status_set(obj, status)


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    list_display = ["key", "subject"]
    fields = ["key", "subject", "body"]


@admin.register(Revision)
class RevisionAdmin(ReadOnlyAdmin):
    list_display = ["public_incident", "number", "status", "published_by", "published_at"]


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    fields = ("channel", "state", "attempts", "will_retry", "last_error", "sent_at")
    readonly_fields = fields
    can_delete = False


@admin.register(Notice)
class NoticeAdmin(ReadOnlyAdmin):
    list_display = ["incident", "kind", "subject", "created_at"]
    inlines = [DeliveryInline]
