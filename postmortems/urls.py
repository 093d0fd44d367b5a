from django.urls import path

from postmortems import views

urlpatterns = [
    path("incidents/<int:incident_id>/postmortem/", views.postmortem_page, name="postmortem"),
    path(
        "incidents/<int:incident_id>/postmortem/start",
        views.postmortem_start,
        name="postmortem_start",
    ),
    path(
        "incidents/<int:incident_id>/postmortem/edit", views.postmortem_edit, name="postmortem_edit"
    ),
    path(
        "incidents/<int:incident_id>/postmortem/state",
        views.postmortem_state,
        name="postmortem_state",
    ),
    path(
        "incidents/<int:incident_id>/postmortem/history",
        views.postmortem_history,
        name="postmortem_history",
    ),
    path(
        "incidents/<int:incident_id>/postmortem/entries/<int:entry_id>/star",
        views.timeline_star,
        name="postmortem_star",
    ),
    path(
        "incidents/<int:incident_id>/postmortem/actions",
        views.action_item_create,
        name="action_item_create",
    ),
    path(
        "incidents/<int:incident_id>/postmortem/actions/<int:item_id>",
        views.action_item_done,
        name="action_item_done",
    ),
    *[
        path(
            f"incidents/<int:incident_id>/postmortem.{fmt}",
            views.postmortem_export,
            {"fmt": fmt},
            name=f"postmortem_{fmt}",
        )
        for fmt in ("md", "pdf", "json")
    ],
    path("reports/metrics/", views.recovery_metrics, name="recovery_metrics"),
    path("reports/postmortems/", views.postmortem_list, name="postmortem_list"),
]
