from django.urls import include, path

from statuspage import component_views, template_views, views

urlpatterns = [
    # The same public URLs the status host serves at its root (statuspage.hosts).
    path("status/", include("statuspage.public_urls")),
    path("status-page/components/", component_views.components_page, name="status_components"),
    path("status-page/maintenances/", include("statuspage.maintenance_urls")),
    path(
        "status-page/components/new",
        component_views.component_create,
        name="status_component_create",
    ),
    path(
        "status-page/components/<int:component_id>/",
        component_views.component_edit,
        name="status_component_edit",
    ),
    path(
        "status-page/components/<int:component_id>/move",
        component_views.component_move,
        name="status_component_move",
    ),
    path(
        "status-page/components/<int:component_id>/delete",
        component_views.component_delete,
        name="status_component_delete",
    ),
    path("status-page/templates/", template_views.templates_page, name="status_templates"),
    path(
        "status-page/templates/new", template_views.template_create, name="status_template_create"
    ),
    path(
        "status-page/templates/<int:template_id>/",
        template_views.template_edit,
        name="status_template_edit",
    ),
    path(
        "status-page/templates/<int:template_id>/move",
        template_views.template_move,
        name="status_template_move",
    ),
    path(
        "status-page/templates/<int:template_id>/delete",
        template_views.template_delete,
        name="status_template_delete",
    ),
    path(
        "incidents/<int:incident_id>/status-page/start-template",
        views.draft_start_template,
        name="status_draft_start_template",
    ),
    path("incidents/<int:incident_id>/status-page/", views.desk, name="status_desk"),
    path("incidents/<int:incident_id>/status-page/draft", views.draft_submit, name="status_draft"),
    path("incidents/<int:incident_id>/status-page/preview", views.preview, name="status_preview"),
    path(
        "incidents/<int:incident_id>/status-page/start",
        views.draft_start,
        name="status_draft_start",
    ),
    path(
        "incidents/<int:incident_id>/status-page/revisions/<int:revision_id>/restore",
        views.revision_restore,
        name="status_revision_restore",
    ),
    path(
        "incidents/<int:incident_id>/status-page/customer-notice",
        views.customer_notice,
        name="status_customer_notice",
    ),
    path(
        "incidents/<int:incident_id>/status-page/deliveries/<int:delivery_id>/retry",
        views.delivery_retry,
        name="status_delivery_retry",
    ),
]
