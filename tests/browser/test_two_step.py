"""Two-step sign-in in a real browser: an owner sets up an authenticator app, keeps the
recovery codes, logs out and logs in again with the password and the app's code (computed
here as the app would). Screenshots land in screenshots/ (not versioned)."""

import time
from base64 import b32decode

import pytest
from django.urls import reverse
from django_otp.oath import TOTP

from tests.browser.test_pages import PASSWORD, _shot, browser, owner, page  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _app_code(key_text: str, *, steps_ahead: int = 0) -> str:
    """The code an authenticator app shows for the key typed in from the page."""
    totp = TOTP(b32decode(key_text.replace(" ", "")))
    totp.time = time.time() + steps_ahead * totp.step
    return f"{totp.token():06d}"


def test_an_owner_sets_up_an_app_and_logs_in_with_its_code(page, live_server, owner):  # noqa: F811
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/")

    page.click("text=Two-step sign-in")
    page.click("text=Set up an authenticator app")
    page.wait_for_selector("[data-totp-key]")
    assert page.locator(".qr svg").count() == 1
    key_text = page.locator("[data-totp-key]").inner_text()
    _shot(page, "two_step_set_up")

    page.fill("#id_code", _app_code(key_text))
    page.click("text=Turn on two-step sign-in")
    page.wait_for_selector("[data-recovery-codes]")
    codes = page.locator("[data-recovery-codes] code").all_inner_texts()
    assert len(codes) == 10
    _shot(page, "two_step_recovery_codes")

    page.click("text=I have kept them: continue")
    page.wait_for_url(f"{live_server.url}/")
    page.click("text=Log out owner")
    page.wait_for_url(f"**{reverse('admin:login')}")

    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{reverse('admin:login_code')}")
    assert "Logging in as owner" in page.inner_text("#content-main")
    page.fill("#id_code", "000000")
    page.click("input[type=submit]")
    assert "That code is not right" in page.inner_text("body")
    _shot(page, "two_step_wrong_code")

    # A wrong code makes the next try wait a second (django-otp's throttling); the code used
    # for the set-up is spent: the app's next one.
    page.wait_for_timeout(1200)
    page.fill("#id_code", _app_code(key_text, steps_ahead=1))
    page.click("input[type=submit]")
    # Logged out, the login form leads to the admin's home, as Django's does.
    page.wait_for_url(f"{live_server.url}{reverse('admin:index')}")
    page.goto(f"{live_server.url}/")
    assert page.locator("text=Log out owner").count() == 1
    _shot(page, "two_step_logged_in")

    page.click("text=Two-step sign-in")
    assert page.locator("[data-recovery-left]").inner_text() == "10 of 10"
    _shot(page, "two_step_on")
