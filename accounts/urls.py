from django.urls import path

from accounts import sso_views, views

urlpatterns = [
    path("accounts/two-factor/", views.two_factor, name="two_factor"),
    path("accounts/two-factor/cancel", views.two_factor_cancel, name="two_factor_cancel"),
    # Single sign-on (accounts.sso); the names are the ones mozilla-django-oidc reverses.
    path("oidc/authenticate/", sso_views.SsoStartView.as_view(), name="oidc_authentication_init"),
    path(
        "oidc/callback/", sso_views.SsoCallbackView.as_view(), name="oidc_authentication_callback"
    ),
]
