"""Writes about a staff user's second factor: set-up, recovery codes, codes, turning off."""

import math

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.selectors import totp_device_confirmed, totp_device_pending

RECOVERY_CODE_COUNT = 10
AUTHENTICATOR_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"


def _normalised(code: str) -> str:
    """Spaces and dashes dropped, lower case: a code typed as read from the screen or paper."""
    return "".join(code.split()).replace("-", "").lower()


def _is_app_code(code: str) -> bool:
    # The app's codes are 6 digits; recovery codes are 8 letters and digits.
    return len(code) == 6 and code.isdigit()


def two_step_code_verify(*, user, code: str, app_only: bool = False) -> Device:
    """The device that accepts `code` (a code of the authenticator app, or an unused recovery
    code unless `app_only`). A recovery code is used up; a wrong code makes the next try wait
    (django-otp's throttling: 1, 2, 4... seconds). Raises ValidationError saying what is wrong.
    """
    code = _normalised(code)
    if not code:
        raise ValidationError("Enter the 6-digit code your authenticator app shows.")
    if app_only and not _is_app_code(code):
        raise ValidationError("Enter the 6 digits your authenticator app shows now.")
    model = TOTPDevice if _is_app_code(code) else StaticDevice
    refusal = None
    # The device row is locked while the code is checked: two requests cannot both use one
    # recovery code or one app code. No exception inside: the failure count must be saved.
    with transaction.atomic():
        device = model.objects.devices_for_user(user, confirmed=True).select_for_update().first()
        if device is None:
            refusal = "That code is not right."
        else:
            allowed, details = device.verify_is_allowed()
            if not allowed:
                refusal = _wait_message(details)
            elif not device.verify_token(code):
                refusal = (
                    "That code is not right. Check that your phone's clock is right, or use "
                    "one of your recovery codes."
                    if model is TOTPDevice
                    else "That recovery code is not right, or it was used already."
                )
    if refusal:
        raise ValidationError(refusal)
    return device


def _wait_message(details: dict | None) -> str:
    locked_until = (details or {}).get("locked_until")
    seconds = (
        max(1, math.ceil((locked_until - timezone.now()).total_seconds())) if locked_until else 1
    )
    unit = "second" if seconds == 1 else "seconds"
    return f"Too many wrong codes in a row: wait {seconds} {unit}, then try again."


@transaction.atomic
def two_step_setup_start(*, user) -> TOTPDevice:
    """A new authenticator key for `user`, not yet in force (confirmed by a first code).
    Replaces a set-up left unfinished. Refused while two-step sign-in is on."""
    if totp_device_confirmed(user=user) is not None:
        raise ValidationError(
            "Two-step sign-in is already on. Turn it off first to move to another app."
        )
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)


def two_step_setup_confirm(*, user, code: str) -> tuple[TOTPDevice, list[str]]:
    """Puts the authenticator app being set up in force once it gave a right code, and makes
    RECOVERY_CODE_COUNT new recovery codes. Returns the device and the codes (shown once)."""
    device = totp_device_pending(user=user)
    if device is None:
        raise ValidationError("There is no set-up under way: start it again.")
    code = _normalised(code)
    if not _is_app_code(code):
        raise ValidationError("Enter the 6 digits your authenticator app shows now.")
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        allowed, details = device.verify_is_allowed()
        verified = allowed and device.verify_token(code)
    if not allowed:
        raise ValidationError(_wait_message(details))
    if not verified:
        raise ValidationError(
            "That code is not right. Enter the code the app shows now, for the key above."
        )
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _recovery_codes_replace(user=user)
    return device, codes


def _recovery_codes_replace(*, user) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(
        user=user, name=RECOVERY_NAME, defaults={"confirmed": True}
    )
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def recovery_codes_regenerate(*, user, code: str) -> list[str]:
    """RECOVERY_CODE_COUNT new recovery codes in place of the old ones, once `code` (of the
    app, or a recovery code) proves the phone or the paper is at hand."""
    if totp_device_confirmed(user=user) is None:
        raise ValidationError("Two-step sign-in is off: there are no recovery codes to renew.")
    two_step_code_verify(user=user, code=code)
    with transaction.atomic():
        return _recovery_codes_replace(user=user)


def two_step_turn_off(*, user, code: str) -> None:
    """Removes the authenticator app and the recovery codes once `code` is right."""
    if totp_device_confirmed(user=user) is None:
        raise ValidationError("Two-step sign-in is already off.")
    two_step_code_verify(user=user, code=code)
    two_step_reset(user=user)


@transaction.atomic
def two_step_reset(*, user) -> int:
    """Removes every authenticator app and recovery code of `user` (a lost phone, by the
    administrator). Returns how many devices were removed."""
    removed = 0
    for model in (TOTPDevice, StaticDevice):
        _, per_model = model.objects.filter(user=user).delete()
        removed += per_model.get(model._meta.label, 0)
    return removed
