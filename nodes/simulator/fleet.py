"""Several simulated nodes started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

from nodes.simulator.config import (
    SimulatedNodeConfig,
)
from nodes.simulator.node import SimulatedNode


class Fleet:
    """Several simulated nodes started and stopped together."""

    def __init__(
        self,
        configs: Sequence[SimulatedNodeConfig],
        node_factory: Callable[[SimulatedNodeConfig], SimulatedNode] = SimulatedNode,
    ) -> None:
        self.nodes: list[SimulatedNode] = [node_factory(config) for config in configs]

    @classmethod
    def uniform(
        cls,
        count: int,
        base: SimulatedNodeConfig,
        language_sets: Sequence[Sequence[str]] | None = None,
        node_factory: Callable[[SimulatedNodeConfig], SimulatedNode] = SimulatedNode,
    ) -> Fleet:
        """`count` nodes like `base`; node i gets `language_sets[i % len(language_sets)]` when given."""
        if count < 1:
            raise ValueError("a fleet needs at least one node")
        configs = []
        for index in range(count):
            languages = (
                list(language_sets[index % len(language_sets)]) if language_sets else list(base.languages)
            )
            seed = None if base.seed is None else base.seed + index
            configs.append(replace(base, name=f"{base.name}-{index + 1}", languages=languages, seed=seed))
        return cls(configs, node_factory)

    @property
    def connected_count(self) -> int:
        return sum(node.is_connected for node in self.nodes)

    @property
    def registered_count(self) -> int:
        return sum(node.is_registered for node in self.nodes)

    def status_counts(self) -> Counter[str]:
        """Last `node_status` each node heard, counted (nodes that heard none are left out)."""
        return Counter(node.last_status for node in self.nodes if node.last_status is not None)

    async def start(self, stagger_s: float = 0.0) -> None:
        """Start every node, `stagger_s` apart so a large fleet does not arrive as one burst."""
        for index, node in enumerate(self.nodes):
            if index and stagger_s > 0:
                await asyncio.sleep(stagger_s)
            await node.start()

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))

    async def wait_until_registered(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(node.registered.wait() for node in self.nodes))

    async def wait_until_status(self, status: str, timeout: float = 10.0) -> None:
        """Wait until every node was last told `status`. Each node is waited on by itself: a node only wakes
        its own waiters, so one node's waiter cannot see the others change."""
        async with asyncio.timeout(timeout):
            await asyncio.gather(
                *(node.wait_for(lambda node=node: node.last_status == status, timeout=timeout) for node in self.nodes)
            )

    def status_line(self) -> str:
        total = len(self.nodes)
        statuses = self.status_counts()
        status_text = " ".join(f"{status}={count}" for status, count in sorted(statuses.items())) or "-"
        rejected = sum(len(node.handshake_statuses) for node in self.nodes)
        errors = sum(len(node.errors) for node in self.nodes)
        jobs = sum(len(node.job_assigns) for node in self.nodes)
        return (
            f"{time.strftime('%H:%M:%S')} connected {self.connected_count}/{total} "
            f"registered {self.registered_count}/{total} statuses {status_text} "
            f"jobs {jobs} completed {self.jobs_completed} in-flight {self.running_jobs} "
            f"peak-concurrency {self.peak_concurrency} errors {errors} rejected-handshakes {rejected}"
        )

    @property
    def jobs_completed(self) -> int:
        return sum(node.jobs_completed for node in self.nodes)

    @property
    def running_jobs(self) -> int:
        return sum(len(node.active_jobs) for node in self.nodes)

    @property
    def peak_concurrency(self) -> int:
        """The highest per-node peak: what to compare with a node's capacity."""
        return max((node.peak_concurrency for node in self.nodes), default=0)

    def outcome_counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for node in self.nodes:
            total.update(node.outcomes)
        return total

    async def run_forever(
        self,
        *,
        status_interval_s: float = 5.0,
        duration_s: float | None = None,
        stop_event: asyncio.Event | None = None,
        out: Callable[[str], None] = print,
    ) -> None:
        """Print a status line every `status_interval_s` until `duration_s` passes or `stop_event` is set.

        It does not stop the nodes; the caller decides when to call `stop()`.
        """
        stop_event = stop_event or asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = None if duration_s is None else loop.time() + duration_s
        while not stop_event.is_set():
            wait_s = status_interval_s
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait_s = min(wait_s, remaining)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), wait_s)
            out(self.status_line())

