"""Every page needs a staff login; production settings pass `check --deploy`; brute force locks."""

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from uuid import UUID

import pytest
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils.regex_helper import normalize

from tests.factories import UserFactory

# Pages anyone may open without logging in. Everything else redirects to the login page.
PUBLIC_URL_NAMES = {
    "admin:login",
    # The login's second step (a code): it opens only after a right password.
    "admin:login_code",
    # For a monitor: statuses only, no customer data.
    "healthz",
    # The signed link customers receive to leave feedback, and its thank-you page.
    "feedback:submit",
    "feedback:thanks",
    "feedback_short",
    # The signed links in offer e-mails: one-click unsubscribe and the customer's offer page.
    "offer_public:unsubscribe",
    "offer_public:offer",
}

# The REST API answers clients that are not browsers: 401/403 instead of a redirect (a token
# or a staff session lets them in), and the webhooks authenticate each request by signature.
# Its documentation page (api:docs) is a page like the others.
API_URL_PREFIX = "api:"
API_PAGES = {"api:docs"}

SAMPLE_VALUES = ("1", "sample", str(UUID(int=1)), "sample/1", "auth")


def _sample_for(regex: str, hints: tuple[str, ...] = ()) -> str:
    for candidate in (*hints, *SAMPLE_VALUES):
        if re.fullmatch(regex, candidate):
            return candidate
    raise AssertionError(f"No sample value matches {regex!r}: add one to SAMPLE_VALUES.")


def _group_regex(pattern: str, name: str) -> str:
    """The sub-pattern of the named group `name` (balanced parentheses)."""
    start = pattern.index(f"(?P<{name}>") + len(f"(?P<{name}>")
    depth = 1
    for end in range(start, len(pattern)):
        depth += {"(": 1, ")": -1}.get(pattern[end], 0) if pattern[end - 1] != "\\" else 0
        if depth == 0:
            return pattern[start:end]
    raise AssertionError(f"Unbalanced group {name} in {pattern!r}")


def _sample_piece(pattern) -> str:
    """A concrete URL piece for one level of the URLconf (a path() route or a re_path())."""
    converters = getattr(pattern, "converters", {})
    if hasattr(pattern, "_route"):

        def substitute(match: re.Match) -> str:
            return _sample_for(converters[match["name"]].regex)

        return re.sub(r"<(?:[^>:]+:)?(?P<name>[^>]+)>", substitute, pattern._route)
    regex = pattern.regex.pattern
    template, params = normalize(regex)[0]
    values = {}
    for param in params:
        group = _group_regex(regex, param)
        literal_alternatives = tuple(a for a in group.split("|") if re.fullmatch(r"[\w-]+", a))
        values[param] = _sample_for(group, literal_alternatives)
    return template % values


def _walk(resolver: URLResolver, prefix: str = "", namespace: str = "") -> Iterator[tuple]:
    for entry in resolver.url_patterns:
        piece = _sample_piece(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = ":".join(n for n in (namespace, entry.namespace) if n)
            yield from _walk(entry, prefix + piece, inner)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield name or entry.lookup_str, "/" + prefix + piece, entry.callback


ALL_URLS = list(_walk(get_resolver()))
PROTECTED_URLS = [
    (name, path)
    for name, path, _ in ALL_URLS
    if name not in PUBLIC_URL_NAMES and (not name.startswith(API_URL_PREFIX) or name in API_PAGES)
]
API_URLS = [
    (name, path)
    for name, path, _ in ALL_URLS
    if name.startswith(API_URL_PREFIX) and name not in API_PAGES
]


def _login_path() -> str:
    return reverse(settings.LOGIN_URL)


def test_the_sample_urls_resolve_to_the_patterns_they_stand_for():
    for name, path, callback in ALL_URLS:
        assert resolve(path).func is callback, f"{path} does not resolve to {name}"
    assert len(PROTECTED_URLS) > 20


def test_every_public_url_name_exists():
    names = {name for name, _, _ in ALL_URLS}
    assert names >= PUBLIC_URL_NAMES, PUBLIC_URL_NAMES - names


@pytest.mark.parametrize(("name", "path"), PROTECTED_URLS, ids=[n for n, _ in PROTECTED_URLS])
def test_anonymous_requests_are_redirected_to_login(client, db, name, path):
    for method in (client.get, client.post):
        response = method(path)

        assert response.status_code == 302, f"{method.__name__.upper()} {path}"
        assert response["Location"].split("?")[0] == _login_path(), response["Location"]


@pytest.mark.parametrize(("name", "path"), PROTECTED_URLS, ids=[n for n, _ in PROTECTED_URLS])
def test_logged_in_users_who_are_not_staff_get_no_page(client, bob, name, path):
    client.force_login(bob)

    response = client.get(path)

    assert response.status_code in (302, 403), f"{path} answered {response.status_code}"
    if response.status_code == 302:
        assert response["Location"].split("?")[0] == _login_path()


@pytest.mark.parametrize(("name", "path"), API_URLS, ids=[n for n, _ in API_URLS])
def test_anonymous_api_requests_get_nothing(client, db, settings, name, path):
    settings.STRIPE_WEBHOOK_SECRET = settings.SHOPIFY_WEBHOOK_SECRET = "configured"
    for method in (client.get, client.post):
        response = method(path)

        # 401/403 without credentials; 400 for a webhook without a signature; 405 for GET.
        assert response.status_code in (400, 401, 403, 405), f"{method.__name__} {path}"


def test_the_login_page_is_open_to_anonymous_visitors(client, db):
    assert client.get(_login_path()).status_code == 200


PRODUCTION_ENV = {"DJANGO_ENV": "production", "ALLOWED_HOSTS": "crm.example.com"}
PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.DEBUG, s.ALLOWED_HOSTS, s.SECRET_KEY, s.SESSION_COOKIE_SECURE, "
    "s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME]))"
)


@pytest.mark.slow
def test_production_settings_pass_the_deploy_check_without_warnings(tmp_path):
    env = {**PRODUCTION_ENV, "SECRET_KEY": secrets.token_urlsafe(60)}

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env={**_clean_environ(), "VAR_DIR": str(tmp_path), **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_takes_secret_key_debug_and_hosts_from_the_environment(tmp_path):
    key = secrets.token_urlsafe(60)

    values = _settings_with({**PRODUCTION_ENV, "SECRET_KEY": key}, tmp_path)

    assert values[:4] == [False, ["crm.example.com"], key, True]
    # __Host- cookies: HTTPS only and bound to this host, never to a parent domain.
    assert values[4:] == ["__Host-sessionid", "__Host-csrftoken"]


def test_debug_can_be_turned_off_in_development(tmp_path):
    assert _settings_with({"DEBUG": "false"}, tmp_path)[0] is False
    assert _settings_with({}, tmp_path)[0] is True


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        env={**_clean_environ(), "VAR_DIR": str(tmp_path), **PRODUCTION_ENV},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


# Not passed on to the subprocesses. DJANGO_ALLOW_ASYNC_UNSAFE: the browser tests set it in
# this process, and no deployment has it.
_NOT_INHERITED = {"DEBUG", "SECRET_KEY", "DJANGO_ENV", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE"}


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}


def _settings_with(env: dict[str, str], tmp_path) -> list:
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        env={**_clean_environ(), "VAR_DIR": str(tmp_path), **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_repeated_failed_logins_lock_out_even_the_right_password(client, db):
    UserFactory(username="carol", is_staff=True, password="correct horse battery staple")
    login = _login_path()

    for attempt in range(1, settings.AXES_FAILURE_LIMIT + 1):
        response = client.post(login, {"username": "carol", "password": "wrong"})
        if attempt < settings.AXES_FAILURE_LIMIT:
            assert response.status_code == 200  # the form again, with an error
    response = client.post(login, {"username": "carol", "password": "correct horse battery staple"})

    assert response.status_code in (403, 429)
    assert "_auth_user_id" not in client.session


def test_the_right_password_logs_in_before_any_lockout(client, db):
    UserFactory(username="carol", is_staff=True, password="correct horse battery staple")

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(_login_path(), {"username": "carol", "password": "wrong"})
    client.post(_login_path(), {"username": "carol", "password": "correct horse battery staple"})

    assert "_auth_user_id" in client.session


def test_weak_passwords_are_refused():
    for weak in ("password", "12345678", "abc", "kT7#vq2!Lm9"):  # the last: 11 characters
        with pytest.raises(ValidationError):
            validate_password(weak)


def test_a_strong_password_of_twelve_characters_is_accepted():
    validate_password("kT7#vq2!Lm9x")


def test_one_address_cannot_cycle_through_user_names(client, db):
    UserFactory(username="carol", is_staff=True, password="correct horse battery staple")
    login = _login_path()

    for attempt in range(settings.AXES_FAILURE_LIMIT):
        client.post(login, {"username": f"guess{attempt}", "password": "wrong"})
    response = client.post(login, {"username": "carol", "password": "correct horse battery staple"})

    assert response.status_code in (403, 429)
    assert "_auth_user_id" not in client.session


def test_lockouts_count_the_address_the_proxy_saw_not_what_the_client_claims(client, db, settings):
    settings.CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    UserFactory(username="carol", is_staff=True, password="correct horse battery staple")
    login = _login_path()

    # The attacker forges a new left-hand address every time; the proxy appends the real one.
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            login,
            {"username": "carol", "password": "wrong"},
            HTTP_X_FORWARDED_FOR=f"10.9.9.{attempt}, 203.0.113.7",
        )
    response = client.post(
        login,
        {"username": "carol", "password": "correct horse battery staple"},
        HTTP_X_FORWARDED_FOR="10.9.9.99, 203.0.113.7",
    )

    assert response.status_code in (403, 429)


def _age_session(client, *, idle: int = 0, since_login: int = 0) -> None:
    session = client.session
    now = int(time.time())
    session["session_started_at"] = now - since_login
    session["session_seen_at"] = now - idle
    session.save()


def test_a_session_left_idle_longer_than_the_timeout_must_log_in_again(staff_client, settings):
    staff_client.get(reverse("pages:today"))
    _age_session(staff_client, idle=settings.SESSION_IDLE_SECONDS + 5)

    response = staff_client.get(reverse("pages:today"))

    assert response.status_code == 302
    assert response["Location"].split("?")[0] == _login_path()


def test_a_busy_session_still_ends_at_its_maximum_age(staff_client, settings):
    staff_client.get(reverse("pages:today"))
    _age_session(staff_client, idle=10, since_login=settings.SESSION_MAX_SECONDS + 5)

    response = staff_client.get(reverse("pages:today"))

    assert response.status_code == 302


def test_an_active_session_goes_on(staff_client, settings):
    staff_client.get(reverse("pages:today"))
    _age_session(staff_client, idle=settings.SESSION_IDLE_SECONDS - 60, since_login=3600)

    assert staff_client.get(reverse("pages:today")).status_code == 200


def test_pages_forbid_inline_and_foreign_scripts(staff_client):
    policy = staff_client.get(reverse("pages:today"))["Content-Security-Policy"]

    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
