"""Reads about a staff user's second factor: whether they have one, and what a login still lacks."""

from base64 import b32encode

import qrcode
import qrcode.image.svg
from django.conf import settings
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

# What a logged-in session still lacks before it may open a staff page.
NEEDS_CODE = "code"  # the user has an authenticator app and this session has not used it
NEEDS_SETUP = "setup"  # an owner without an authenticator app, when OTP_REQUIRED_FOR_OWNERS

OWNER_GROUP = "Owner"  # the role made by migration pages/0001_roles


def totp_device_confirmed(*, user) -> TOTPDevice | None:
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).first()


def totp_device_pending(*, user) -> TOTPDevice | None:
    """The authenticator app being set up: its key is shown until a code confirms it."""
    return TOTPDevice.objects.devices_for_user(user, confirmed=False).order_by("-pk").first()


def user_has_two_step(*, user) -> bool:
    """The recovery codes come with the authenticator app: the app alone says it is on."""
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).exists()


def user_is_owner(*, user) -> bool:
    return user.is_superuser or user.groups.filter(name=OWNER_GROUP).exists()


def user_must_set_up_two_step(*, user) -> bool:
    return settings.OTP_REQUIRED_FOR_OWNERS and user_is_owner(user=user)


def session_two_step_missing(*, user) -> str | None:
    """NEEDS_CODE, NEEDS_SETUP or None for the user of a request (django-otp's OTPMiddleware
    has set user.is_verified()). Remembered on the user object: the middleware and the
    admin ask on the same request."""
    if not hasattr(user, "_two_step_missing"):
        missing = None
        # Without django-otp's middleware (a request made by hand) nothing is verified.
        is_verified = getattr(user, "is_verified", lambda: False)
        if user.is_authenticated and not is_verified():
            if user_has_two_step(user=user):
                missing = NEEDS_CODE
            elif user_must_set_up_two_step(user=user):
                missing = NEEDS_SETUP
        user._two_step_missing = missing
    return user._two_step_missing


def recovery_codes_left(*, user) -> int:
    device = StaticDevice.objects.devices_for_user(user, confirmed=True).first()
    return device.token_set.count() if device else 0


def totp_key_text(device: TOTPDevice) -> str:
    """The key as authenticator apps take it when typed in: base32, in groups of four."""
    key = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def totp_qr_svg(device: TOTPDevice) -> str:
    """The otpauth:// address of the app being set up as an inline SVG QR code."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return image.to_string(encoding="unicode")
