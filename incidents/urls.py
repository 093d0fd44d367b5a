from django.urls import path

from incidents import health, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("incidents/", views.incident_list, name="incident_list"),
    path("incidents/new", views.incident_create, name="incident_create"),
    path("incidents/<int:incident_id>/", views.incident_room, name="incident_room"),
    path("incidents/<int:incident_id>/timeline", views.incident_timeline, name="incident_timeline"),
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
        "incidents/<int:incident_id>/approvals",
        views.approval_request_create,
        name="approval_request_create",
    ),
    path(
        "incidents/<int:incident_id>/approvals/<int:request_id>/decide",
        views.approval_decide,
        name="approval_decide",
    ),
    path(
        "incidents/<int:incident_id>/approvals/<int:request_id>/withdraw",
        views.approval_withdraw,
        name="approval_withdraw",
    ),
    path("incidents/<int:incident_id>/runs", views.incident_runs, name="incident_runs"),
    path("incidents/<int:incident_id>/runs/new", views.run_create, name="run_create"),
    path(
        "incidents/<int:incident_id>/runs/<int:run_id>/dry-run",
        views.run_preview,
        name="run_preview",
    ),
    path(
        "incidents/<int:incident_id>/runs/<int:run_id>/approval",
        views.run_request_approval,
        name="run_request_approval",
    ),
    path("incidents/<int:incident_id>/runs/<int:run_id>/start", views.run_start, name="run_start"),
    path("incidents/<int:incident_id>/runs/<int:run_id>/pause", views.run_pause, name="run_pause"),
    path(
        "incidents/<int:incident_id>/runs/<int:run_id>/resume", views.run_resume, name="run_resume"
    ),
    path(
        "incidents/<int:incident_id>/runs/<int:run_id>/cancel", views.run_cancel, name="run_cancel"
    ),
    path(
        "incidents/<int:incident_id>/runs/<int:run_id>/steps/<int:step_id>/retry",
        views.step_retry,
        name="step_retry",
    ),
    path(
        "incidents/<int:incident_id>/runs/<int:run_id>/steps/<int:step_id>/skip",
        views.step_skip,
        name="step_skip",
    ),
    path(
        "releases/<int:release_id>/known-good", views.release_known_good, name="release_known_good"
    ),
]
