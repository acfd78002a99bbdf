"""Two-step sign-in fixtures: a user with an authenticator app, and the codes it shows."""

import time

import pytest
from django.contrib.auth.models import Group
from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"


def app_code(device: TOTPDevice) -> str:
    """What the authenticator app shows now; a later time step when this one was used
    already (the device refuses a code twice, and accepts one step ahead)."""
    device.refresh_from_db()
    now = (int(time.time()) - device.t0) // device.step + device.drift
    step = max(now, device.last_t + 1)
    return f"{hotp(device.bin_key, step, digits=device.digits):0{device.digits}d}"


def two_step_turn_on(user) -> tuple[TOTPDevice, list[str]]:
    services.two_step_setup_start(user=user)
    device = TOTPDevice.objects.get(user=user)
    return services.two_step_setup_confirm(user=user, code=app_code(device))


@pytest.fixture(autouse=True)
def _no_waiting_between_codes(settings):
    """django-otp makes each try after a wrong code wait longer (1, 2, 4 s...); the tests
    that are about that wait turn it back on."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


@pytest.fixture
def carol(db):
    """A staff user (an assistant) who has set up an authenticator app."""
    user = UserFactory(username="carol", is_staff=True, password=PASSWORD)
    user.groups.add(Group.objects.get(name="Assistant"))
    return user


@pytest.fixture
def carol_app(carol):
    device, codes = two_step_turn_on(carol)
    return device, codes
