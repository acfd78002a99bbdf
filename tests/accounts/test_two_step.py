"""Two-step sign-in: set-up, login with a code or a recovery code, lockout, enforcement."""

import os
import subprocess
import sys
import time
from base64 import b32encode

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.sites import PENDING_LOGIN
from api import services as api_services
from tests.accounts.conftest import PASSWORD, app_code, two_step_turn_on
from tests.factories import UserFactory

LOGIN = "/admin/login/"
CODE = "/admin/login/code/"
SET_UP = "/account/two-step/"


def _password(client, username="carol", password=PASSWORD, next_url="/"):
    return client.post(LOGIN, {"username": username, "password": password, "next": next_url})


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


# --- Setting up --------------------------------------------------------------------------


def test_setting_up_shows_a_qr_code_and_the_key_then_a_right_code_turns_it_on(staff_client):
    staff_client.post(reverse("accounts:two_step_start"))
    page = staff_client.get(SET_UP).content.decode()
    device = TOTPDevice.objects.get(user__username="alice")

    assert "<svg" in page and "<path" in page
    key_shown = page.split("data-totp-key>")[1].split("<")[0].replace(" ", "")
    assert key_shown == b32encode(device.bin_key).decode().rstrip("=")
    assert not device.confirmed

    answer = staff_client.post(reverse("accounts:two_step_confirm"), {"code": app_code(device)})

    device.refresh_from_db()
    assert answer.status_code == 200 and device.confirmed
    tokens = set(StaticToken.objects.values_list("token", flat=True))
    assert len(tokens) == 10
    assert all(token in answer.content.decode() for token in tokens)
    # The codes and the key are shown once: the page now shows neither.
    page = staff_client.get(SET_UP).content.decode()
    assert "Two-step sign-in is on" in page and "10 of 10" in page
    assert not any(token in page for token in tokens) and "data-totp-key" not in page
    # The session that set it up counts as verified.
    assert staff_client.get("/").status_code == 200


def test_a_wrong_first_code_leaves_two_step_sign_in_off(staff_client):
    staff_client.post(reverse("accounts:two_step_start"))

    answer = staff_client.post(reverse("accounts:two_step_confirm"), {"code": "000000"})

    assert answer.status_code == 400
    assert "That code is not right" in answer.content.decode()
    assert not TOTPDevice.objects.filter(confirmed=True).exists()
    assert not StaticToken.objects.exists()


def test_letters_as_a_first_code_are_refused_with_a_clear_error(staff_client):
    staff_client.post(reverse("accounts:two_step_start"))

    answer = staff_client.post(reverse("accounts:two_step_confirm"), {"code": "abcdefgh"})

    assert answer.status_code == 400
    assert "Enter the 6 digits your authenticator app shows now" in answer.content.decode()


def test_starting_again_while_it_is_on_is_refused(client, carol_app):
    device, _ = carol_app
    client.force_login(device.user)
    client.post(CODE, {"code": app_code(device)})

    answer = client.post(reverse("accounts:two_step_start"), follow=True)

    assert "already on" in answer.content.decode()
    assert TOTPDevice.objects.filter(user=device.user).count() == 1


# --- Logging in --------------------------------------------------------------------------


def test_a_user_without_an_app_logs_in_with_the_password_alone(client, db):
    UserFactory(username="dave", is_staff=True, password=PASSWORD)

    answer = _password(client, "dave")

    assert answer.status_code == 302 and _logged_in(client)


def test_the_password_alone_does_not_log_in_a_user_with_an_app(client, carol_app):
    answer = _password(client)

    assert answer.status_code == 302 and answer["Location"] == CODE
    assert not _logged_in(client)
    assert client.get("/").status_code == 302


def test_the_app_code_after_the_password_logs_in_and_verifies_the_session(client, carol_app):
    device, _ = carol_app
    _password(client, next_url="/customers/")
    page = client.get(CODE)
    assert "Logging in as <strong>carol</strong>" in page.content.decode()

    answer = client.post(CODE, {"code": app_code(device)})

    assert answer.status_code == 302 and answer["Location"] == "/customers/"
    assert _logged_in(client) and PENDING_LOGIN not in client.session
    assert client.get("/").status_code == 200
    assert client.get(reverse("admin:index")).status_code == 200


def test_a_recovery_code_logs_in_once(client, carol_app):
    _, codes = carol_app
    _password(client)

    answer = client.post(CODE, {"code": codes[0].upper()})  # as read aloud: any case
    assert answer.status_code == 302 and _logged_in(client)

    client.post(reverse("admin:logout"))
    _password(client)
    again = client.post(CODE, {"code": codes[0]})

    assert again.status_code == 200 and not _logged_in(client)
    assert "not right, or it was used already" in again.content.decode()
    assert StaticToken.objects.count() == 9


def test_a_wrong_code_is_refused_with_a_clear_error(client, carol_app):
    _password(client)

    answer = client.post(CODE, {"code": "123 456"})

    assert answer.status_code == 200 and not _logged_in(client)
    assert "That code is not right" in answer.content.decode()


def test_after_a_wrong_code_the_next_try_waits(client, carol_app, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 60
    device, _ = carol_app
    _password(client)
    client.post(CODE, {"code": "000000"})

    answer = client.post(CODE, {"code": app_code(device)})

    assert not _logged_in(client)
    assert "Too many wrong codes in a row: wait" in answer.content.decode()


def test_wrong_codes_count_toward_the_lockout_and_then_no_code_lets_in(client, carol_app, settings):
    device, _ = carol_app
    _password(client)

    for attempt in range(1, settings.AXES_FAILURE_LIMIT + 1):
        answer = client.post(CODE, {"code": "000000"})
        if attempt < settings.AXES_FAILURE_LIMIT:
            assert answer.status_code == 200
    assert answer.status_code in (403, 429)
    assert AccessAttempt.objects.filter(username="carol").exists()

    # Neither the right code nor the right password gets in now.
    assert client.post(CODE, {"code": app_code(device)}).status_code in (302, 403, 429)
    assert not _logged_in(client)
    assert _password(client).status_code in (403, 429)
    assert not _logged_in(client)


def test_a_right_password_does_not_wipe_the_count_of_wrong_codes(client, carol_app, settings):
    """Only a complete login clears the failures: retyping the password after each wrong
    code would otherwise give endless tries at the code."""
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _password(client)
        client.post(CODE, {"code": "000000"})

    assert _password(client).status_code in (403, 429)


def test_a_half_done_login_is_forgotten_after_a_while(client, carol_app, settings):
    device, _ = carol_app
    _password(client)
    session = client.session
    session[PENDING_LOGIN]["since"] = int(time.time()) - settings.TWO_STEP_PENDING_SECONDS - 1
    session.save()

    answer = client.post(CODE, {"code": app_code(device)})

    assert answer.status_code == 302 and answer["Location"] == LOGIN
    assert not _logged_in(client)


def test_the_code_page_without_a_password_goes_back_to_the_login(client, db):
    answer = client.get(CODE)

    assert answer.status_code == 302 and answer["Location"] == LOGIN


# --- Sessions that have not used their code ----------------------------------------------


def test_an_unverified_session_of_a_user_with_an_app_is_sent_to_the_code_page(client, carol_app):
    device, _ = carol_app
    client.force_login(device.user)  # e.g. a session begun before the app was set up

    for path in ("/", "/customers/", SET_UP, reverse("admin:index")):
        answer = client.get(path)
        assert answer.status_code == 302, path
        assert answer["Location"].startswith(CODE), path

    assert client.post(CODE, {"code": app_code(device)}).status_code == 302
    assert client.get("/").status_code == 200


def test_the_admin_refuses_an_unverified_session_even_past_the_middleware(rf, carol_app):
    device, _ = carol_app
    request = rf.get("/admin/")
    request.user = device.user
    request.user.is_verified = lambda: False

    assert not admin.site.has_permission(request)

    verified = rf.get("/admin/")
    verified.user = type(device.user).objects.get(pk=device.user.pk)
    verified.user.is_verified = lambda: True
    assert admin.site.has_permission(verified)


def test_the_api_takes_an_unverified_session_for_none_and_tokens_still_work(client, carol_app):
    device, _ = carol_app
    client.force_login(device.user)
    url = reverse("api:customer-list")

    assert client.get(url).status_code in (401, 403)

    _, token = api_services.api_token_create(user=device.user, name="shop", scope="read")
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_public_pages_and_healthz_do_not_ask_for_a_code(client, carol_app):
    device, _ = carol_app
    client.force_login(device.user)

    assert client.get(reverse("healthz")).status_code in (200, 503)
    assert client.get(LOGIN).status_code == 302  # to the code page, not a loop
    assert client.get(CODE).status_code == 200


# --- Owners ------------------------------------------------------------------------------


@pytest.fixture
def olivia(db):
    """An owner (the Owner group, not a superuser) without an authenticator app."""
    user = UserFactory(username="olivia", is_staff=True, password=PASSWORD)
    user.groups.add(Group.objects.get(name="Owner"))
    return user


def test_when_required_an_owner_without_an_app_is_sent_to_set_up_first(client, olivia, settings):
    settings.OTP_REQUIRED_FOR_OWNERS = True
    client.force_login(olivia)

    for path in ("/", "/dashboard/", reverse("admin:index")):
        answer = client.get(path)
        assert answer.status_code == 302 and answer["Location"].startswith(SET_UP), path
    page = client.get(SET_UP)
    assert page.status_code == 200
    assert "you need two-step sign-in before you can use" in page.content.decode()

    client.post(reverse("accounts:two_step_start"))
    device = TOTPDevice.objects.get(user=olivia)
    client.post(reverse("accounts:two_step_confirm"), {"code": app_code(device)})

    assert client.get("/").status_code == 200


def test_the_requirement_spares_assistants_and_is_off_unless_set(client, olivia, settings):
    assistant = UserFactory(username="asa", is_staff=True)
    assistant.groups.add(Group.objects.get(name="Assistant"))
    settings.OTP_REQUIRED_FOR_OWNERS = True
    client.force_login(assistant)
    assert client.get("/").status_code == 200

    settings.OTP_REQUIRED_FOR_OWNERS = False
    client.force_login(olivia)
    assert client.get("/").status_code == 200


def test_superusers_count_as_owners(client, alice, settings):
    settings.OTP_REQUIRED_FOR_OWNERS = True
    client.force_login(alice)

    assert client.get("/")["Location"].startswith(SET_UP)


def test_the_api_token_of_an_owner_without_an_app_still_works(client, olivia, settings):
    settings.OTP_REQUIRED_FOR_OWNERS = True
    _, token = api_services.api_token_create(user=olivia, name="shop", scope="read")

    answer = client.get(reverse("api:customer-list"), HTTP_AUTHORIZATION=f"Bearer {token}")

    assert answer.status_code == 200


# --- Recovery codes, turning off, reset --------------------------------------------------


def _verified(client, device):
    client.force_login(device.user)
    client.post(CODE, {"code": app_code(device)})


def test_new_recovery_codes_replace_the_old_ones(client, carol_app):
    device, old = carol_app
    _verified(client, device)

    answer = client.post(
        reverse("accounts:recovery_codes_regenerate"), {"renew-code": app_code(device)}
    )

    new = set(StaticToken.objects.values_list("token", flat=True))
    assert answer.status_code == 200 and len(new) == 10 and not new & set(old)
    assert all(code in answer.content.decode() for code in new)


def test_turning_off_needs_a_current_code(client, carol_app):
    device, _ = carol_app
    _verified(client, device)

    refused = client.post(reverse("accounts:two_step_turn_off"), {"off-code": "000000"})
    assert refused.status_code == 400 and TOTPDevice.objects.filter(user=device.user).exists()

    done = client.post(reverse("accounts:two_step_turn_off"), {"off-code": app_code(device)})
    assert done.status_code == 302
    assert not TOTPDevice.objects.filter(user=device.user).exists()
    assert not StaticDevice.objects.filter(user=device.user).exists()
    client.post(reverse("admin:logout"))
    assert _password(client).status_code == 302 and _logged_in(client)


def test_the_reset_command_removes_a_lost_phone(carol_app, capsys):
    device, _ = carol_app

    call_command("two_step_reset", "carol")

    assert not TOTPDevice.objects.filter(user=device.user).exists()
    assert "carol" in capsys.readouterr().out


def test_the_reset_command_names_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user named"):
        call_command("two_step_reset", "nobody")


def test_a_code_is_checked_against_the_users_own_app_only(carol_app, db):
    _, codes = carol_app
    dave = UserFactory(username="dave", is_staff=True)
    two_step_turn_on(dave)

    with pytest.raises(ValidationError):
        services.two_step_code_verify(user=dave, code=codes[0])


# --- Settings ----------------------------------------------------------------------------

PRINT_REQUIRED = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.OTP_REQUIRED_FOR_OWNERS)"
)


def _required_with(env: dict[str, str], tmp_path) -> str:
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_ENV", "SECRET_KEY", "ALLOWED_HOSTS", "OTP_REQUIRED_FOR_OWNERS"}
        and key != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    done = subprocess.run(
        [sys.executable, "-c", PRINT_REQUIRED],
        env={**inherited, "VAR_DIR": str(tmp_path), **env},
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_owners_must_set_it_up_in_production_unless_turned_off(tmp_path):
    production = {
        "DJANGO_ENV": "production",
        "SECRET_KEY": "k" * 60,
        "ALLOWED_HOSTS": "crm.example.com",
    }

    assert _required_with(production, tmp_path) == "True"
    assert _required_with({**production, "OTP_REQUIRED_FOR_OWNERS": "off"}, tmp_path) == "False"
    assert _required_with({}, tmp_path) == "False"
    assert _required_with({"OTP_REQUIRED_FOR_OWNERS": "on"}, tmp_path) == "True"
