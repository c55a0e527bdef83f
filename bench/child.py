"""A benchmark client (node fleet, REST submitters, Celery submitters, raw-limit clients) in a child process
of its own, driven by two events: the child sets `ready` once it is up, the parent sets `stop` to end it,
and the child answers with one picklable result on a pipe.

Spawned, not forked: the parent has Django, Redis pools and threads that a fork would copy half-way.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

Entry = Callable[[Any, Event, Event, Connection], None]
_context = multiprocessing.get_context("spawn")


class Child:
    def __init__(self, name: str, entry: Entry, config: Any) -> None:
        self.name = name
        self.ready = _context.Event()
        self.stop_event = _context.Event()
        self._receiver, sender = _context.Pipe(duplex=False)
        self.process = _context.Process(target=entry, args=(config, self.ready, self.stop_event, sender), name=name, daemon=True)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def start(self, ready_timeout: float | None) -> Child:
        """Start the child and wait until it is ready (None: do not wait; `wait_ready` later)."""
        self.process.start()
        if ready_timeout is not None:
            self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, ready_timeout: float) -> Child:
        waited = 0.0
        while not self.ready.wait(0.2):
            waited += 0.2
            if not self.process.is_alive():
                raise RuntimeError(f"{self.name} exited with code {self.process.exitcode} before it was ready")
            if waited >= ready_timeout:
                self.kill()
                raise TimeoutError(f"{self.name} was not ready within {ready_timeout:g} s")
        return self

    def stop(self, timeout: float = 60.0) -> Any:
        """Tell the child to stop and return its result."""
        self.stop_event.set()
        if not self._receiver.poll(timeout):
            self.kill()
            raise TimeoutError(f"{self.name} sent no result within {timeout:g} s of being stopped")
        result = self._receiver.recv()
        self.process.join(10)
        return result

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def split_evenly(total: int, parts: int) -> list[int]:
    """`total` items over `parts` children, the first ones taking one more when it does not divide."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]
