"""`make run`: the whole stack starts, answers, and leaves no process behind when stopped."""

import contextlib
import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from unittest import mock

import psutil
import pytest
from celery import Celery
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError

from pages.management.commands.runstack import Command, _env_int, _var_dir_prepare
from tests.factories import UserFactory

READY_LINE = "Press Ctrl-C to stop."
DEMO_CUSTOMERS = 60


class Stack:
    """`manage.py runstack` (what `make run` runs) in a temporary VAR_DIR."""

    def __init__(self, var_dir: Path):
        self.var_dir = var_dir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(
                ("DATABASE_URL", "CELERY_", "DJANGO_SUPERUSER_", "DEBUG", "DJANGO_ALLOW_ASYNC")
            )
        }
        env.update(
            VAR_DIR=str(var_dir),
            PORT=str(self.port),
            DJANGO_ENV="development",
            DEMO_CUSTOMERS=str(DEMO_CUSTOMERS),
            WEB_WORKERS="1",
            CELERY_WORKER_CONCURRENCY="1",
            PYTHONUNBUFFERED="1",
        )
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runstack"],
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.lines:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"The stack did not start:\n{self.output}")
            time.sleep(0.2)

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def health_check(self) -> dict:
        """Run the health task on the stack's worker, through the stack's own broker."""
        url = f"redis+socket://{self.var_dir / 'valkey.sock'}"
        # Celery prefers these variables to the URLs given to the app (CI's Redis pass sets them).
        with mock.patch.dict(os.environ):
            os.environ.pop("CELERY_BROKER_URL", None)
            os.environ.pop("CELERY_RESULT_BACKEND", None)
            client = Celery("probe", broker=url, backend=url, set_as_current=False)
            try:
                result = client.send_task("crm.tasks.crm_health_check")
                value = result.get(timeout=30)
                del result  # unsubscribes now, while the broker still runs
                return value
            finally:
                client.close()

    def kill(self) -> None:
        """Last resort, for a failed test: nothing may survive it."""
        processes = self.descendants()
        self.process.kill()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(processes, timeout=5)


@pytest.fixture(scope="module")
def var_dir():
    # Short path: the broker's unix socket lives in it.
    directory = Path(tempfile.mkdtemp(prefix="crm-stack-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _command_lines(processes: list[psutil.Process]) -> list[str]:
    lines = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            lines.append(" ".join(process.cmdline()))
    return lines


@pytest.fixture(scope="module")
def first_start(var_dir):
    """Start on an empty VAR_DIR, look around, then stop with Ctrl-C (SIGINT)."""
    stack = Stack(var_dir)
    try:
        stack.wait_ready()
        seen = {
            "login_page": _get(f"{stack.url}/admin/login/"),
            "static": _get(f"{stack.url}/static/admin/css/base.css"),
            "descendants": stack.descendants(),
        }
        # Read at once: a short-lived child (a pool process replaced, a helper) may be gone
        # by the time the checks below have run.
        seen["commands"] = _command_lines(seen["descendants"])
        seen["health"] = stack.health_check()
        seen["first_run"] = _first_run_outcome(var_dir / "db.sqlite3")
        seen["after_kills"] = _kill_worker_and_broker(stack)
        password = re.search(r"^Password: (\S+)$", stack.output, re.MULTILINE)
        seen["password"] = password and password.group(1)
        seen["logged_in_at"] = seen["password"] and _log_in(stack.url, "admin", seen["password"])

        stack.process.send_signal(signal.SIGINT)
        seen["returncode"] = stack.process.wait(timeout=40)
        _, seen["survivors"] = psutil.wait_procs(seen["descendants"], timeout=10)
        seen["output"] = stack.output
        return seen
    finally:
        if stack.process.poll() is None:
            stack.kill()


def _main_process(stack: "Stack", pattern: str) -> psutil.Process:
    for process in psutil.Process(stack.process.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if re.search(pattern, " ".join(process.cmdline())):
                return process
    raise AssertionError(f"No child matches {pattern!r}:\n{stack.output}")


def _wait_for_line(stack: "Stack", text: str, *, after: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in stack.lines[after:]):
            return True
        time.sleep(0.2)
    return False


def _kill_worker_and_broker(stack: "Stack") -> dict:
    """Kill -9 the Celery worker, then the broker: the web keeps answering and both return."""
    outcome = {}
    mark = len(stack.lines)
    _main_process(stack, r"celery -A config worker").kill()
    outcome["web_while_worker_down"] = _get(f"{stack.url}/admin/login/")
    outcome["worker_back"] = _wait_for_line(
        stack, "The worker process is running again", after=mark
    )
    mark = len(stack.lines)
    _main_process(stack, r"(valkey|redis)-server").kill()
    outcome["web_while_broker_down"] = _get(f"{stack.url}/admin/login/")
    outcome["broker_back"] = _wait_for_line(
        stack, "The broker process is running again", after=mark
    )
    # The worker rode out the outage and takes tasks again through the new broker.
    outcome["health"] = stack.health_check()
    outcome["stack_alive"] = stack.process.poll() is None
    return outcome


@pytest.mark.slow
def test_a_killed_worker_or_broker_is_restarted_while_the_web_keeps_answering(first_start):
    after = first_start["after_kills"]
    assert after["web_while_worker_down"] == 200
    assert after["worker_back"], first_start["output"]
    assert after["web_while_broker_down"] == 200
    assert after["broker_back"], first_start["output"]
    assert after["health"]["status"] == "ok"
    assert after["stack_alive"]


@pytest.mark.slow
def test_the_stack_serves_the_login_page_and_static_files(first_start):
    assert first_start["login_page"] == 200, first_start["output"]
    assert first_start["static"] == 200


@pytest.mark.slow
def test_the_first_start_seeds_demo_data_and_prints_a_working_login(first_start):
    assert f"Loading demo data ({DEMO_CUSTOMERS} customers)" in first_start["output"]
    assert "Login: admin" in first_start["output"]
    assert first_start["password"], first_start["output"]
    assert first_start["logged_in_at"] == "/admin/"


@pytest.mark.slow
def test_the_stack_runs_a_broker_a_web_server_a_worker_and_beat(first_start):
    commands = "\n".join(first_start["commands"])
    assert re.search(r"(valkey|redis)-server", commands), commands
    assert "gunicorn config.wsgi:application" in commands
    assert "celery -A config worker" in commands
    assert "celery -A config beat" in commands
    assert first_start["health"]["status"] == "ok"
    assert first_start["health"]["customers"] == DEMO_CUSTOMERS


@pytest.mark.slow
def test_the_first_start_segments_the_demo_customers_at_once(first_start):
    status, segments = first_start["first_run"]
    assert status == "succeeded", first_start["output"]
    assert segments >= 2


@pytest.mark.slow
def test_ctrl_c_stops_every_process_of_the_stack(first_start):
    assert first_start["returncode"] == 0, first_start["output"]
    assert len(first_start["descendants"]) >= 4
    assert first_start["survivors"] == [], first_start["output"]


@pytest.mark.slow
def test_a_restart_keeps_data_and_login_and_a_killed_parent_takes_its_children(
    first_start, var_dir
):
    stack = Stack(var_dir)
    children: list[psutil.Process] = []
    try:
        stack.wait_ready()
        assert "Loading demo data" not in stack.output
        assert "Login: admin (existing user, password unchanged" in stack.output
        assert "changepassword admin" in stack.output
        assert "Password:" not in stack.output
        assert stack.health_check()["customers"] == DEMO_CUSTOMERS
        children = stack.descendants()
        assert len(children) >= 4

        stack.process.kill()
        stack.process.wait(timeout=10)
        _, survivors = psutil.wait_procs(children, timeout=20)
        assert survivors == [], stack.output
    finally:
        if stack.process.poll() is None:
            stack.kill()
        for process in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def _first_run_outcome(database: Path, timeout: float = 60) -> tuple[str, int]:
    """Wait for the first segmentation run the stack queues; its status and active segments."""
    import sqlite3

    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
            row = connection.execute(
                "SELECT status FROM segmentation_segmentationrun ORDER BY id LIMIT 1"
            ).fetchone()
            status = row[0] if row else ""
            if status not in ("", "pending", "running"):
                (segments,) = connection.execute(
                    "SELECT count(*) FROM segmentation_segment WHERE is_active"
                ).fetchone()
                return status, segments
        time.sleep(0.5)
    return status, 0


def _get(url: str) -> int:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        url, timeout=10
    ) as response:
        return response.status


def _log_in(base_url: str, username: str, password: str) -> str:
    """Log in through the admin form; returns the path the browser ends on."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
    )
    with opener.open(f"{base_url}/admin/login/", timeout=10) as response:
        page = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            "username": username,
            "password": password,
            "next": "/admin/",
        }
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/admin/login/", data=form, headers={"Referer": f"{base_url}/admin/login/"}
    )
    with opener.open(request, timeout=10) as response:
        return urllib.parse.urlparse(response.url).path


def _login(monkeypatch, username: str = "", password: str = "") -> list[str]:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", username)
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", password)
    return Command().login_ensure()


def test_the_first_login_is_admin_with_a_random_password_that_works(db, monkeypatch):
    lines = _login(monkeypatch)

    password = next(line for line in lines if line.startswith("Password: ")).split()[1]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password(password)
    assert len(password) >= 16


def test_an_existing_admin_keeps_its_password(db, monkeypatch):
    admin = UserFactory(username="admin", is_staff=True, is_superuser=True, password="old pass 1")

    lines = _login(monkeypatch)

    admin.refresh_from_db()
    assert admin.check_password("old pass 1")
    assert not any(line.startswith("Password:") for line in lines)
    assert "changepassword admin" in " ".join(lines)


def test_no_admin_is_added_when_the_owner_already_has_a_superuser(db, monkeypatch):
    UserFactory(username="owner", is_staff=True, is_superuser=True)

    lines = _login(monkeypatch)

    assert not get_user_model().objects.filter(username="admin").exists()
    assert "owner" in lines[0]


def test_the_login_from_the_environment_is_created_once(db, monkeypatch):
    _login(monkeypatch, "maria", "plum tree lantern 42")
    user = get_user_model().objects.get(username="maria")
    assert user.is_superuser and user.check_password("plum tree lantern 42")

    lines = _login(monkeypatch, "maria", "another passphrase 77")

    user.refresh_from_db()
    assert user.check_password("plum tree lantern 42")
    assert "existing user" in lines[0]


def test_a_weak_or_half_given_login_from_the_environment_is_refused(db, monkeypatch):
    with pytest.raises(CommandError, match="too weak"):
        _login(monkeypatch, "maria", "123")
    with pytest.raises(CommandError, match="both"):
        _login(monkeypatch, "maria", "")
    assert not get_user_model().objects.exists()


def test_numeric_settings_of_the_stack_are_checked(monkeypatch):
    monkeypatch.setenv("PORT", "80a")
    with pytest.raises(CommandError, match="PORT must be a whole number"):
        _env_int("PORT", 8000, low=1, high=65535)
    monkeypatch.setenv("PORT", "70000")
    with pytest.raises(CommandError, match="between 1 and 65535"):
        _env_int("PORT", 8000, low=1, high=65535)
    monkeypatch.delenv("PORT")
    assert _env_int("PORT", 8000, low=1, high=65535) == 8000


def test_the_first_start_writes_a_private_development_key_that_restarts_keep(
    tmp_path, settings, monkeypatch
):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    settings.VAR_DIR = tmp_path / "var"
    settings.DEV_SECRET_KEY_FILE = settings.VAR_DIR / "secret_key"

    _var_dir_prepare()
    key = settings.DEV_SECRET_KEY_FILE.read_text()
    _var_dir_prepare()

    assert len(key) >= 50
    assert settings.DEV_SECRET_KEY_FILE.stat().st_mode & 0o777 == 0o600
    assert settings.DEV_SECRET_KEY_FILE.read_text() == key
