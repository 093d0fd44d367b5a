from django.urls import path

from incidents import health, live, views
from incidents.decisions.views import (
    decision_preview,
    decision_read,
    decision_record,
    recovery_panel,
)

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("incidents/", views.incident_list, name="incident_list"),
    path("incidents/new", views.incident_create, name="incident_create"),
    path("incidents/<int:incident_id>/", views.incident_room, name="incident_room"),
    path("incidents/<int:incident_id>/timeline", views.incident_timeline, name="incident_timeline"),
    path("incidents/<int:incident_id>/events", live.incident_events, name="incident_events"),
    path(
        "incidents/<int:incident_id>/parts/<slug:section>",
        views.incident_section,
        name="incident_section",
    ),
    path("incidents/<int:incident_id>/status", views.incident_status, name="incident_status"),
    path("incidents/<int:incident_id>/severity", views.incident_severity, name="incident_severity"),
    path(
        "incidents/<int:incident_id>/commander", views.incident_commander, name="incident_commander"
    ),
    path("incidents/<int:incident_id>/instants", views.incident_instant, name="incident_instant"),
    path("incidents/<int:incident_id>/notes", views.note_create, name="note_create"),
    path(
        "incidents/<int:incident_id>/checklist-items/<int:item_id>",
        views.checklist_item_toggle,
        name="checklist_item_toggle",
    ),
    path(
        "releases/<int:release_id>/known-good", views.release_known_good, name="release_known_good"
    ),
    path(
        "incidents/<int:incident_id>/decision",
        decision_record,
        name="incident_decision",
    ),
    path(
        "incidents/<int:incident_id>/decision/read",
        decision_read,
        name="incident_decision_read",
    ),
    path(
        "incidents/<int:incident_id>/decision/preview",
        decision_preview,
        name="incident_decision_preview",
    ),
    path(
        "incidents/<int:incident_id>/recovery",
        recovery_panel,
        name="incident_recovery",
    ),
]
