"""Single sign-on through an OpenID Connect provider (mozilla-django-oidc's code flow with
PKCE), so an organisation's people sign in with the accounts they already have and need no
password here.

Who someone is: the provider's issuer and subject (`iss`, `sub`), kept in SsoIdentity. A
first sign-in links to an existing account only when the provider vouches for the e-mail
address (`email_verified`) and exactly one account has it; otherwise a new account is made,
without a usable password, named after `preferred_username` (or the e-mail's local part)
and made unique with a number.

What they may do: when OIDC_ROLE_MAP is set, the roles and approver capacities it gives for
the values of the OIDC_ROLES_CLAIM claim (`groups` by default), set afresh at every sign-in,
so someone taken out of a group at the provider loses the role at their next sign-in. Groups
the map never names (and staff status) are left as they are: those stay local decisions.
Without a map, the provider says who people are and roles are given in the console.

Second factor: a commander signing in through SSO is asked for the console's own TOTP code
unless the provider says a second factor was used (`amr` with "mfa", or a password and an
otp/hardware/biometric method, RFC 8176), or SSO_TRUSTS_PROVIDER_MFA says every sign-in at
the provider takes one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from accounts.models import SsoIdentity

logger = logging.getLogger(__name__)

# RFC 8176 methods that are a factor besides a password.
SECOND_FACTORS = {"otp", "hwk", "swk", "sc", "sms", "tel", "fpt", "face", "iris", "retina", "vbm"}
USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")
USERNAME_MAX = 150


def claim_values(claims: Mapping[str, Any], name: str) -> set[str]:
    """The values of a claim that may be a list or a single string (providers differ)."""
    value = claims.get(name)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def roles_for(claims: Mapping[str, Any]) -> set[str]:
    role_map: Mapping[str, list[str]] = settings.OIDC_ROLE_MAP
    values = claim_values(claims, settings.OIDC_ROLES_CLAIM)
    return {role for value in values for role in role_map.get(value, [])}


def apply_roles(user: User, roles: set[str]) -> tuple[set[str], set[str]]:
    """Give `user` exactly `roles` among the groups the role map names; return (added,
    removed). Groups the map never names are not touched."""
    managed = {name for names in settings.OIDC_ROLE_MAP.values() for name in names}
    held = set(user.groups.filter(name__in=managed).values_list("name", flat=True))
    added, removed = (roles & managed) - held, held - roles
    if added:
        user.groups.add(*Group.objects.filter(name__in=added))
    if removed:
        user.groups.remove(*Group.objects.filter(name__in=removed))
    return added, removed


def second_factor_used(id_token: Mapping[str, Any]) -> bool:
    """Whether the provider says the person gave a second factor (or is trusted to ask)."""
    if settings.SSO_TRUSTS_PROVIDER_MFA:
        return True
    methods = claim_values(id_token, "amr")
    return "mfa" in methods or (len(methods) >= 2 and bool(methods & SECOND_FACTORS))


def free_username(claims: Mapping[str, Any]) -> str:
    """A user name nobody has, from the claims: preferred_username, else the e-mail's local
    part, else the subject; cut to Django's limit, with a number added when taken."""
    email = str(claims.get("email") or "")
    wanted = str(claims.get("preferred_username") or email.split("@")[0] or claims["sub"])
    base = USERNAME_UNSAFE.sub("-", wanted)[: USERNAME_MAX - 6].strip("-") or "sso-user"
    name, number = base, 1
    while User.objects.filter(username__iexact=name).exists():
        number += 1
        name = f"{base}-{number}"
    return name


class SsoBackend(OIDCAuthenticationBackend):  # type: ignore[misc]  # untyped library
    """mozilla-django-oidc's backend, matching people by issuer and subject, checking the ID
    token's audience and issuer, and setting roles from the claims."""

    def authenticate(self, request: Any, **kwargs: Any) -> User | None:
        """Only from the SSO callback, which passes the nonce and PKCE verifier it saved:
        the library's backend reads `code` and `state` from any request, so a password
        sign-in to /accounts/login/?code=…&state=… would otherwise swap a code unchecked."""
        if "nonce" not in kwargs or "code_verifier" not in kwargs:
            return None
        user: User | None = super().authenticate(request, **kwargs)
        return user

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        payload: dict[str, Any] = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token was issued to another client.")
        # OpenID Connect Core 3.1.3.7: a token for several audiences names the party it
        # was issued to (azp), and an azp, when present, must be us.
        authorized = payload.get("azp")
        if (len(audiences) > 1 and not authorized) or (
            authorized and authorized != settings.OIDC_RP_CLIENT_ID
        ):
            raise SuspiciousOperation("The ID token was issued to another client (azp).")
        issuer = settings.OIDC_OP_ISSUER
        if issuer and payload.get("iss") != issuer:
            raise SuspiciousOperation("The ID token comes from another issuer.")
        if not payload.get("sub"):
            raise SuspiciousOperation("The ID token names no subject.")
        return payload

    def get_or_create_user(
        self, access_token: str, id_token: str, payload: Mapping[str, Any]
    ) -> User | None:
        answer = self.get_userinfo(access_token, id_token, payload)
        if not isinstance(answer, dict):
            raise SuspiciousOperation("The userinfo answer is not a JSON object.")
        # The ID token's claims, then userinfo's: some providers put groups in one only.
        claims = {**payload, **answer}
        if claims.get("sub") != payload["sub"]:
            # OpenID Connect Core 5.3.2: userinfo must be about the ID token's subject.
            raise SuspiciousOperation("The userinfo answer is about someone else.")
        issuer = str(payload.get("iss") or settings.OIDC_OP_ISSUER)
        with transaction.atomic():
            user = self.user_for(issuer, str(payload["sub"]), claims)
            if not user.is_active:
                logger.warning("SSO sign-in refused: %s is deactivated", user.get_username())
                return None
            self.refresh(user, claims)
        self.request.sso_second_factor = second_factor_used(payload)
        return user

    def user_for(self, issuer: str, subject: str, claims: Mapping[str, Any]) -> User:
        identity = (
            SsoIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=issuer, subject=subject)
            .first()
        )
        if identity is not None:
            identity.last_sign_in_at = timezone.now()
            identity.save(update_fields=["last_sign_in_at"])
            return identity.user
        user = self.linkable_user(claims) or self.new_user(claims)
        SsoIdentity.objects.create(
            user=user, issuer=issuer, subject=subject, last_sign_in_at=timezone.now()
        )
        logger.info("SSO: %s linked to %s (%s)", user.get_username(), subject, issuer)
        return user

    def linkable_user(self, claims: Mapping[str, Any]) -> User | None:
        """The one existing account with the e-mail address the provider has verified,
        unless it is staff (local break-glass accounts stay local) or already tied to an
        identity (an address reassigned at the provider must not take over an account)."""
        email = str(claims.get("email") or "")
        if not email or claims.get("email_verified") is not True:
            return None
        matches = list(User.objects.filter(email__iexact=email)[:2])
        if len(matches) != 1:
            return None
        found = matches[0]
        if found.is_staff or found.is_superuser or found.sso_identities.exists():
            return None
        return found

    def new_user(self, claims: Mapping[str, Any]) -> User:
        user = User(username=free_username(claims), email=str(claims.get("email") or "")[:254])
        user.set_unusable_password()
        user.save()
        return user

    def refresh(self, user: User, claims: Mapping[str, Any]) -> None:
        """Names and e-mail from the provider, and the roles the map gives."""
        given = str(claims.get("given_name") or "")[:150]
        family = str(claims.get("family_name") or "")[:150]
        if not given and not family and claims.get("name"):
            given, _, family = str(claims["name"]).partition(" ")
        changed = {"first_name": given[:150], "last_name": family[:150]}
        if claims.get("email") and claims.get("email_verified") is True:
            changed["email"] = str(claims["email"])[:254]
        for field, value in changed.items():
            setattr(user, field, value)
        user.save(update_fields=list(changed))
        if not settings.OIDC_ROLE_MAP:
            return  # no map: roles are given in the console, not by the provider
        if settings.OIDC_ROLES_CLAIM not in claims:
            # A provider that sent no such claim this time (scope not granted) says nothing
            # about roles: leave them, rather than take every mapped role away.
            logger.warning(
                "SSO: no %r claim for %s; roles left as they were",
                settings.OIDC_ROLES_CLAIM,
                user.get_username(),
            )
            return
        added, removed = apply_roles(user, roles_for(claims))
        if added or removed:
            logger.info(
                "SSO: roles of %s%s%s",
                user.get_username(),
                "".join(f" +{name}" for name in sorted(added)),
                "".join(f" -{name}" for name in sorted(removed)),
            )

    def filter_users_by_claims(self, claims: Mapping[str, Any]) -> Iterable[User]:
        raise NotImplementedError("SsoBackend matches by issuer and subject")
