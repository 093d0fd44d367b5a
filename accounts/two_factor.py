"""Two-factor sign-in (TOTP, RFC 6238, through django-otp) for the people whose word changes
production or what customers read: Incident Commanders, Approvers (in whatever capacity they
approve: on-call, DBA...), Support Leads and staff, when REQUIRE_TWO_FACTOR is on.

A person who must use it and has no confirmed device is sent to set one up (a QR code for an
authenticator app, and the key to type instead); one who has is asked for a code after the
password. Either way the session is verified only once a code from the device is accepted
(django_otp.login), and RequireTwoFactorMiddleware keeps every other page, the admin
included, out of reach until then. A sign-in through SSO whose provider vouches for a second
factor counts as verified too (accounts.sso, second_factor_given). Staff reset a lost
device in the admin (OTP TOTP devices: delete it; the person sets up a new one at the next
sign-in).
"""

from __future__ import annotations

import io
from base64 import b32encode
from typing import Any

import qrcode
import qrcode.image.svg
from django.conf import settings
from django_otp.plugins.otp_totp.models import TOTPDevice

from incidents.roles import APPROVE_PERMISSION, COMMAND_PERMISSION, STATUS_PAGE_PERMISSION

DEVICE_NAME = "Authenticator app"
# Set on a session signed in through SSO whose provider vouched for a second factor.
SSO_SECOND_FACTOR_KEY = "sso_second_factor"
# Running rollbacks, approving them, and speaking to customers on the status page.
GUARDED_PERMISSIONS = (COMMAND_PERMISSION, APPROVE_PERMISSION, STATUS_PAGE_PERMISSION)


def two_factor_required(user: Any) -> bool:
    """Whether `user` must sign in with a second factor."""
    if not settings.REQUIRE_TWO_FACTOR or not user.is_authenticated:
        return False
    return bool(user.is_staff or any(user.has_perm(name) for name in GUARDED_PERMISSIONS))


def second_factor_given(request: Any, user: Any) -> bool:
    """Whether this session has its second factor: a code from the person's device, or an
    SSO sign-in the provider says took one (accounts.sso)."""
    return bool(user.is_verified() or request.session.get(SSO_SECOND_FACTOR_KEY) is True)


def forget_sso_second_factor(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """On every sign-in (user_logged_in): a password sign-in into a session that once came
    through SSO must not inherit the provider's word; the SSO callback sets it again after."""
    if request is not None and hasattr(request, "session"):
        request.session.pop(SSO_SECOND_FACTOR_KEY, None)


def confirmed_device(user: Any) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def pending_device(user: Any) -> TOTPDevice:
    """The device being set up (not confirmed yet): the same one until it is confirmed, so
    reloading the page does not change the key the person already scanned."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    return device


def qr_svg(device: TOTPDevice) -> str:
    """The device's otpauth:// URL as an SVG QR code, for an authenticator app to scan."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


def secret_text(device: TOTPDevice) -> str:
    """The key in base32, in groups of four, for typing into an app that cannot scan."""
    key = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(key[at : at + 4] for at in range(0, len(key), 4))
