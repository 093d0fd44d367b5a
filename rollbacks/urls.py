"""Routes of the rollback pages. They live under the incident they belong to
(`/incidents/<id>/runs/…`, `/incidents/<id>/approvals/…`), beside the room's own routes."""

from django.urls import path

from rollbacks import discovery_views, plan_views, release_views, views

urlpatterns = [
    path("services/discover", discovery_views.service_discover, name="service_discover"),
    path(
        "services/<int:service_id>/releases",
        release_views.service_releases,
        name="service_releases",
    ),
    path(
        "incidents/<int:incident_id>/versions",
        plan_views.incident_versions,
        name="incident_versions",
    ),
    path("incidents/<int:incident_id>/plan/search", plan_views.plan_search, name="plan_search"),
    path(
        "incidents/<int:incident_id>/plan/services/<int:service_id>/row",
        plan_views.plan_row,
        name="plan_row",
    ),
    path(
        "incidents/<int:incident_id>/plan/services/<int:service_id>/options",
        plan_views.plan_options,
        name="plan_options",
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
    *[
        path(
            f"incidents/<int:incident_id>/runs/<int:run_id>/{action}",
            views.run_act,
            {"action": action},
            name=f"run_{action.replace('-', '_')}",
        )
        for action in views.RUN_ACTIONS
    ],
    *[
        path(
            f"incidents/<int:incident_id>/runs/<int:run_id>/steps/<int:step_id>/{action}",
            views.step_act,
            {"action": action},
            name=f"step_{action}",
        )
        for action in views.STEP_ACTIONS
    ],
    path(
        "incidents/<int:incident_id>/runs/<int:run_id>/steps/<int:step_id>/log",
        views.step_log,
        name="step_log",
    ),
]
