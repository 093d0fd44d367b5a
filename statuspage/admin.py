"""Admin: components and default texts are edited here; revisions, notices and deliveries
are shown read-only (they change through the status desk's services)."""

from __future__ import annotations

from django.contrib import admin

from incidents.admin import ReadOnlyAdmin
from statuspage.models import Component, Delivery, MessageTemplate, Notice, Revision


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    list_display = ["name", "position", "service", "status", "updated_at"]
    list_editable = ["position"]
    fields = ["name", "description", "position", "service", "status"]


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
