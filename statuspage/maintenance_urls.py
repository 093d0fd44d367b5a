"""The support lead's maintenance pages, under /status-page/maintenances/."""

from django.urls import path

from statuspage import maintenance_views

urlpatterns = [
    path("", maintenance_views.maintenances_page, name="status_maintenances"),
    path("new", maintenance_views.maintenance_create, name="status_maintenance_create"),
    path("<int:maintenance_id>/", maintenance_views.maintenance_page, name="status_maintenance"),
    path(
        "<int:maintenance_id>/edit",
        maintenance_views.maintenance_edit,
        name="status_maintenance_edit",
    ),
    path(
        "<int:maintenance_id>/updates",
        maintenance_views.maintenance_update,
        name="status_maintenance_update",
    ),
    path(
        "<int:maintenance_id>/cancel",
        maintenance_views.maintenance_cancel,
        name="status_maintenance_cancel",
    ),
]
