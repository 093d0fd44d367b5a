from django.contrib import admin

from accounts.models import SsoIdentity


@admin.register(SsoIdentity)
class SsoIdentityAdmin(admin.ModelAdmin):
    """Staff housekeeping: see who signs in through SSO, and unlink an identity (the next
    sign-in then links again, by verified e-mail, or makes a new account)."""

    list_display = ("user", "subject", "issuer", "created_at", "last_sign_in_at")
    search_fields = ("user__username", "subject", "issuer")
    readonly_fields = ("user", "issuer", "subject", "created_at", "last_sign_in_at")

    def has_add_permission(self, request: object) -> bool:  # type: ignore[override]
        return False
