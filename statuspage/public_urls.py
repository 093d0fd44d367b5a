"""What the status host serves (statuspage.hosts): the public page and its machine-readable
forms at the root, under the same names as on the console's /status/."""

from django.urls import path

from statuspage import views

urlpatterns = [
    path("", views.public_page, name="status_page"),
    path("api/v2/summary.json", views.summary_json, name="status_summary_json"),
    path("api/v2/status.json", views.status_json, name="status_status_json"),
    path("api/v2/components.json", views.components_json, name="status_components_json"),
    path("history.atom", views.history_atom, name="status_history_atom"),
]
