"""A local SMTP server for the send benchmark: counts messages and bytes, keeps nothing.

Runs in its own process (multiprocessing "spawn"), so its work does not share a core's time
slices or a GIL with the sender being measured. Knows nothing of Django.
"""

import multiprocessing
import socket
import time
from dataclasses import dataclass


class _Counting:
    def __init__(self, messages, size) -> None:
        self.messages, self.size = messages, size

    async def handle_DATA(self, server, session, envelope):
        with self.messages.get_lock():
            self.messages.value += 1
            self.size.value += len(envelope.content)
        return "250 OK"


def _serve(port: int, messages, size, ready, stop) -> None:
    from aiosmtpd.controller import Controller  # a development requirement: only the bench

    controller = Controller(_Counting(messages, size), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SmtpSink:
    """``with SmtpSink() as sink:`` a server on ``sink.port``; ``sink.received()`` counts."""

    port: int = 0

    def __enter__(self) -> "SmtpSink":
        context = multiprocessing.get_context("spawn")
        self.port = self.port or _free_port()
        self._messages = context.Value("q", 0)
        self._size = context.Value("q", 0)
        self._ready, self._stop = context.Event(), context.Event()
        self._process = context.Process(
            target=_serve,
            args=(self.port, self._messages, self._size, self._ready, self._stop),
            daemon=True,
        )
        self._process.start()
        if not self._ready.wait(30):
            raise RuntimeError("the benchmark's SMTP server did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._process.join(10)

    def received(self) -> tuple[int, int]:
        """Messages and bytes received so far."""
        return self._messages.value, self._size.value

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self._messages.value < count and time.monotonic() < deadline:
            time.sleep(0.05)
