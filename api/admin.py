from django.contrib import admin

from api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Staff housekeeping: who holds which token, last use; revoking is the owner's page or
    `manage.py api_token revoke` (the digest cannot be turned back into a token)."""

    list_display = (
        "prefix",
        "user",
        "name",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "user__username")
    # Expiry and revocation change through api.tokens (the page, the command), which log
    # them; an admin edit could bring a revoked token back to life unseen.
    readonly_fields = (
        "user",
        "prefix",
        "digest",
        "scopes",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    exclude = ()

    def has_add_permission(self, request: object) -> bool:  # type: ignore[override]
        return False
