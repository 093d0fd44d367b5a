"""What the status host serves (statuspage.hosts): the public page and its machine-readable
forms at the root, under the same names as on the console's /status/."""

from django.urls import path

from statuspage import brand_views, feeds, history_views, maintenance_views, subscriber_views, views

urlpatterns = [
    path("", views.public_page, name="status_page"),
    path("brand.css", brand_views.brand_css, name="status_brand_css"),
    path("api/v2/summary.json", views.summary_json, name="status_summary_json"),
    path("api/v2/status.json", views.status_json, name="status_status_json"),
    path("api/v2/components.json", views.components_json, name="status_components_json"),
    path("history.atom", feeds.PageAtomFeed(), name="status_history_atom"),
    path("history.rss", feeds.PageRssFeed(), name="status_history_rss"),
    path(
        "components/<int:component_id>/history.atom",
        feeds.ComponentAtomFeed(),
        name="status_component_atom",
    ),
    path(
        "components/<int:component_id>/history.rss",
        feeds.ComponentRssFeed(),
        name="status_component_rss",
    ),
    path("subscribe", subscriber_views.subscribe, name="status_subscribe"),
    path(
        "subscribe/confirm/<str:token>", subscriber_views.confirm, name="status_subscriber_confirm"
    ),
    path("subscribe/manage/<str:token>", subscriber_views.manage, name="status_subscriber_manage"),
    path(
        "subscribe/unsubscribe/<str:token>",
        subscriber_views.unsubscribe,
        name="status_unsubscribe",
    ),
    path(
        "maintenances/<int:maintenance_id>",
        maintenance_views.public_maintenance,
        name="status_maintenance_public",
    ),
    path(
        "api/v2/scheduled-maintenances.json",
        maintenance_views.maintenances_json,
        name="status_maintenances_json",
    ),
    path(
        "api/v2/scheduled-maintenances/upcoming.json",
        maintenance_views.upcoming_json,
        name="status_maintenances_upcoming_json",
    ),
    path(
        "api/v2/scheduled-maintenances/active.json",
        maintenance_views.active_json,
        name="status_maintenances_active_json",
    ),
    path("history", history_views.history_page, name="status_history"),
    path("incidents/<int:incident_id>", history_views.incident_page, name="status_incident"),
    path("api/v2/incidents.json", history_views.incidents_json, name="status_incidents_json"),
    path(
        "api/v2/incidents/unresolved.json",
        history_views.unresolved_json,
        name="status_unresolved_json",
    ),
]
