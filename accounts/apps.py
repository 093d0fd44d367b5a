from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Sign-in"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from accounts import checks  # noqa: F401  (registers the system checks)
        from accounts.two_factor import forget_sso_second_factor

        user_logged_in.connect(forget_sso_second_factor, dispatch_uid="forget_sso_second_factor")
