from django.urls import path

from accounts import views

urlpatterns = [
    path("accounts/two-factor/", views.two_factor, name="two_factor"),
    path("accounts/two-factor/cancel", views.two_factor_cancel, name="two_factor_cancel"),
]
