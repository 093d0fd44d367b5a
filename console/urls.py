"""URL map of the console."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from incidents.views import SignInView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("accounts.urls")),
    path("", include("incidents.urls")),
    path("", include("rollbacks.urls")),
    path("", include("statuspage.urls")),
    path("", include("postmortems.urls")),
    path("", include("playbooks.urls")),
    path("", include("api.urls")),
]
