"""Run the whole product in the foreground: broker, web server, one Celery worker and beat."""

import contextlib
import os
import secrets
import signal
import socket
import sys
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.management.utils import get_random_secret_key

from config.celery import app
from config.env import env_int, env_str
from config.processes import ProcessError, Supervisor, broker_start, spawn, stop
from crm.models import Customer
from pages.demo import demo_seed
from segmentation.models import SegmentationRun
from segmentation.services import segmentation_run_request

WEB_START_TIMEOUT = 60
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
WORKER_START_TIMEOUT = 30
WORKER_NAME = "crm@%h"
CHANGE_PASSWORD_HINT = ".venv/bin/python manage.py changepassword {username}"


class Command(BaseCommand):
    help = (
        "Migrate, load demo data into an empty database, create the login, then run the "
        "embedded broker (unless CELERY_BROKER_URL is set), gunicorn, one Celery worker and "
        "Celery beat until Ctrl-C. Used by `make run`."
    )

    def handle(self, *args, **options) -> None:
        port = _env_int("PORT", 8000, low=1, high=65535)
        web_workers = _env_int("WEB_WORKERS", 2, low=1, high=64)
        concurrency = _env_int("CELERY_WORKER_CONCURRENCY", 2, low=1, high=64)
        demo_customers = _env_int("DEMO_CUSTOMERS", 2000, low=0, high=10_000_000)
        _port_free_or_fail(port)
        _var_dir_prepare()

        self.say("Migrating the database…")
        call_command("migrate", interactive=False, verbosity=0)
        if not settings.DEBUG:
            # WhiteNoise serves the collected files; with DEBUG on it reads them in place.
            call_command("collectstatic", interactive=False, verbosity=0)
        if demo_customers and not settings.PRODUCTION and not Customer.objects.exists():
            self.say(f"Loading demo data ({demo_customers} customers), first start only…")
            summary = demo_seed(customers=demo_customers, seed=1)
            self.say(f"Demo data: {summary.customers} customers, {summary.purchases} purchases.")
        login = self.login_ensure()

        self.supervisor = Supervisor(self.say)
        self.stopping = False
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.on_signal)
        exit_code = 0
        try:
            self.start_children(port=port, web_workers=web_workers, concurrency=concurrency)
            url = f"http://127.0.0.1:{port}/"
            self.wait_for_web(f"http://127.0.0.1:{port}/admin/login/")
            self.wait_for_worker()
            self.first_segmentation_request()
            self.banner(url, login)
            exit_code = self.supervise()
        except ProcessError as error:
            self.stderr.write(str(error))
            exit_code = 1
        finally:
            self.stop_children()
        if exit_code:
            sys.exit(exit_code)

    def say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def login_ensure(self) -> list[str]:
        """Create the login on the first start; never change an existing user."""
        user_model = get_user_model()
        username = env_str("DJANGO_SUPERUSER_USERNAME")
        password = env_str("DJANGO_SUPERUSER_PASSWORD")
        if bool(username) != bool(password):
            raise CommandError(
                "Set both DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD, or neither."
            )
        hint = CHANGE_PASSWORD_HINT.format(username=username or "admin")
        if username:
            if user_model.objects.filter(username=username).exists():
                return [f"Login: {username} (existing user, password unchanged; change it: {hint})"]
            try:
                validate_password(password, user_model(username=username))
            except ValidationError as error:
                raise CommandError(
                    "DJANGO_SUPERUSER_PASSWORD is too weak: " + " ".join(error.messages)
                ) from error
            email = env_str("DJANGO_SUPERUSER_EMAIL")
            user_model.objects.create_superuser(username, email, password)
            return [f"Login: {username} (password from DJANGO_SUPERUSER_PASSWORD)"]
        if user_model.objects.filter(username="admin").exists():
            return [f"Login: admin (existing user, password unchanged; change it: {hint})"]
        owners = list(
            user_model.objects.filter(is_superuser=True, is_active=True).values_list(
                "username", flat=True
            )[:3]
        )
        if owners:
            return [f"Login: {', '.join(owners)} (existing users)"]
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "", password)
        return [
            "Login: admin",
            f"Password: {password}",
            f"(shown only this once; change it any time: {hint})",
        ]

    def start_children(self, *, port: int, web_workers: int, concurrency: int) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cwd = settings.BASE_DIR
        if not env_str("CELERY_BROKER_URL"):
            socket_path = settings.EMBEDDED_BROKER_SOCKET
            self.say(f"Starting the embedded broker on {socket_path}…")
            self.supervisor.start("broker", lambda: broker_start(socket_path, env=env, cwd=cwd))
        python = sys.executable
        commands = {
            # gunicorn, not runserver: no autoreloader process pair to supervise, several
            # workers, and the same server as in production; WhiteNoise serves static files.
            "web": [
                python, "-m", "gunicorn", "config.wsgi:application",
                "--bind", f"127.0.0.1:{port}",
                "--workers", str(web_workers), "--threads", "4",
                "--timeout", "120", "--graceful-timeout", "5",
                "--access-logfile", "-", "--no-control-socket",
            ],
            "worker": [
                python, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO",
                f"--concurrency={concurrency}", f"--hostname={WORKER_NAME}",
                "--without-gossip", "--without-mingle",
            ],
            "beat": [python, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO"],
        }  # fmt: skip
        for name, argv in commands.items():
            self.supervisor.start(name, lambda argv=argv: spawn(argv, env=env, cwd=cwd))

    def wait_for_web(self, url: str) -> None:
        deadline = time.monotonic() + WEB_START_TIMEOUT
        while time.monotonic() < deadline and not self.stopping:
            self.check_children()
            try:
                # No proxy: a user's http_proxy must not stand between us and 127.0.0.1.
                with _direct.open(_probe_request(url), timeout=10) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        if not self.stopping:
            raise ProcessError(f"The web server did not answer {url} in {WEB_START_TIMEOUT} s.")

    def wait_for_worker(self) -> None:
        """Wait until the worker answers a ping, so the banner is the last thing printed."""
        worker = WORKER_NAME.replace("%h", socket.gethostname())
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        problem = ""
        while time.monotonic() < deadline and not self.stopping:
            self.check_children()
            try:
                if app.control.ping(destination=[worker], timeout=1):
                    return
            except Exception as error:  # an unreachable broker: say so, keep the web running
                problem = f" ({error})"
                time.sleep(1)
        if not self.stopping:
            self.stderr.write(
                f"The Celery worker did not answer in {WORKER_START_TIMEOUT} s{problem}; "
                "background tasks will wait until it does."
            )

    def first_segmentation_request(self) -> None:
        """Segment the customers at once on a first start instead of waiting for the schedule."""
        if SegmentationRun.objects.exists() or not Customer.objects.exists():
            return
        run = segmentation_run_request(trigger=SegmentationRun.Trigger.COMMAND)
        self.say(f"First segmentation queued (run #{run.pk}); segments appear in a few seconds.")

    def banner(self, url: str, login: list[str]) -> None:
        rule = "=" * 72
        lines = [rule, f"Customer CRM is running: {url}", *login, "Press Ctrl-C to stop.", rule]
        self.say("\n".join(lines))

    def check_children(self) -> None:
        """While the stack starts, a child that dies stops everything (it would only die again)."""
        self.supervisor.check(restart=False)

    def supervise(self) -> int:
        """Once running, a child that dies is restarted with backoff; the others go on."""
        while not self.stopping:
            self.supervisor.check()
            time.sleep(0.2)
        return 0

    def on_signal(self, signum: int, frame) -> None:
        if self.stopping:
            # A second Ctrl-C: no more waiting.
            for _, process in self.supervisor.processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
            return
        self.stopping = True
        self.say(f"\nReceived {signal.Signals(signum).name}; stopping…")

    def stop_children(self) -> None:
        self.stopping = True
        children = self.supervisor.processes
        by_name = dict(children)
        # The broker goes last so the worker can finish its shutdown cleanly.
        stop([p for name, p in children if name != "broker"], timeout=15)
        if "broker" in by_name:
            stop([by_name["broker"]], timeout=5)
        self.say("Stopped.")


def _probe_request(url: str) -> urllib.request.Request:
    """A request the site answers with 200 also in production (allowed host, behind TLS)."""
    hosts = [h for h in settings.ALLOWED_HOSTS if h != "*" and not h.startswith(".")]
    headers = {"X-Forwarded-Proto": "https"} if settings.PRODUCTION else {}
    if hosts:
        headers["Host"] = hosts[0]
    return urllib.request.Request(url, headers=headers)


def _env_int(name: str, default: int, *, low: int, high: int) -> int:
    try:
        return env_int(name, default, low=low, high=high)
    except ImproperlyConfigured as error:
        raise CommandError(str(error)) from None


def _var_dir_prepare() -> None:
    """Make VAR_DIR, the development secret key (so sessions survive restarts) and, with
    DEBUG on, the static folder WhiteNoise looks at (collectstatic makes it otherwise)."""
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    key_file = settings.DEV_SECRET_KEY_FILE
    if not settings.PRODUCTION and not env_str("SECRET_KEY") and not key_file.exists():
        # The children (web, worker, beat) read the file when they load their settings.
        key_file.touch(mode=0o600)
        key_file.write_text(get_random_secret_key())
    if settings.DEBUG:
        settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)


def _port_free_or_fail(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise CommandError(
                f"Port {port} on 127.0.0.1 is in use (another `make run`?). "
                "Stop it or choose another port: PORT=8001 make run"
            ) from None
