"""Admin for approval policies, which people edit, and approval requests, which are
read-only here: they change through rollbacks.approvals so that every change lands on the
incident's timeline."""

from __future__ import annotations

from django.contrib import admin

from incidents.admin import ReadOnlyAdmin
from rollbacks.models import ApprovalPolicy, ApprovalRequest


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "severities", "scenario", "required_roles", "active"]
    list_filter = ["active", "scenario"]


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "incident", "scenario", "status", "requested_by", "requested_at"]
    list_filter = ["status", "scenario"]
