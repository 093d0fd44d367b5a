"""Routes of the playbook pages, and of drafting one in an incident's room."""

from django.urls import path

from playbooks import views

urlpatterns = [
    path("playbooks/", views.playbook_list, name="playbook_list"),
    path("playbooks/import", views.playbook_import, name="playbook_import"),
    path("playbooks/<slug:name>/", views.playbook_detail, name="playbook_detail"),
    path("playbooks/<slug:name>/edit", views.playbook_edit, name="playbook_edit"),
    path("playbooks/<slug:name>/archive", views.playbook_archive, name="playbook_archive"),
    path("playbooks/<slug:name>.yaml", views.playbook_export, name="playbook_export"),
    path(
        "incidents/<int:incident_id>/playbooks/form",
        views.incident_playbook_form,
        name="incident_playbook_form",
    ),
    path(
        "incidents/<int:incident_id>/playbooks/<slug:name>/draft",
        views.incident_playbook_draft,
        name="incident_playbook_draft",
    ),
]
