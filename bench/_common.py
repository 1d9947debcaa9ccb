"""Shared bench helpers: the sandbox in its own process, and result tables.

The sandbox runs in a separate (spawned) process so its HTTP servers do not
share the client's GIL; the figures then measure the client, as they would
against a real origin and a real CDN API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import multiprocessing
import os
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class SandboxSpec:
    """What the sandbox process builds (see ``cdn_preheat.sandbox.server.Sandbox``)."""

    videos: int = 3
    variants: int = 3
    segments: int = 20
    push_batch: int = 500
    requests_per_second: int = 20
    push_per_day: int = 100_000
    task_delay: float = 0.5
    latency: float = 0.0  # seconds added to every CDN API request
    nice: int = 0  # scheduling priority change for the sandbox process (negative: root only)
    sandbox_gc: bool = False  # Python's cyclic GC on in the sandbox process (see README)
    # Further Tencent accounts (name, seconds added to each of its API requests), each
    # with the limits above and its own keys: several targets (docs/targets.md).
    accounts: tuple[tuple[str, float], ...] = ()
    # How the emulators count each API's rate: sliding, fixed or bucket
    # (cdn_preheat.sandbox.core.RateCounting; no vendor document settles it).
    rate_counting: str = "sliding"


def _serve(spec: SandboxSpec, conn: Connection) -> None:
    if spec.nice:
        with contextlib.suppress(OSError):
            os.nice(spec.nice)
    from cdn_preheat.sandbox.core import Faults
    from cdn_preheat.sandbox.server import Sandbox, parse_rate_counting
    from cdn_preheat.sandbox.tencent import TencentLimits

    limits = TencentLimits(
        push_batch=spec.push_batch,
        requests_per_second=spec.requests_per_second,
        push_per_day=spec.push_per_day,
        task_delay=spec.task_delay,
    )
    from cdn_preheat.sandbox.server import TencentAccount

    accounts = {
        name: TencentAccount(limits=dataclasses.replace(limits), faults=Faults(latency=latency))
        for name, latency in spec.accounts
    }
    sandbox = Sandbox(
        videos=spec.videos,
        variants=spec.variants,
        segments=spec.segments,
        tencent_limits=limits,
        faults=Faults(latency=spec.latency),
        tencent_accounts=accounts,
        rate_counting=parse_rate_counting(spec.rate_counting),
    )
    if not spec.sandbox_gc:
        # The emulator stands in for a remote API and lives for one run. It keeps
        # a record per pushed URL, and full collections over hundreds of
        # thousands of them pause its rate check for up to ~90 ms, which a real
        # API does not: left on, the bench would measure the emulator's pauses.
        gc.disable()
    with sandbox:
        conn.send((sandbox.endpoints, sandbox.client_env("tencent")))
        while True:
            try:
                command = conn.recv()
            except EOFError:
                return
            name, argument = command if isinstance(command, tuple) else (command, None)
            # The account asked about: the argument names a further one, else the first.
            api: Any = sandbox.apis.get(argument) if isinstance(argument, str) else None
            api = api or sandbox.tencent
            if name == "outcomes":
                conn.send(dict(api.outcomes))
            elif name == "received":
                conn.send(len(api.received_urls()))
            elif name == "push_times":  # when each accepted push passed the checks
                conn.send({p.task_id: p.time.timestamp() for p in api.received()})
            elif name == "actions":  # authenticated calls by action
                conn.send(dict(api.actions))
            elif name == "rate_refusals":  # calls refused by their API's rate window
                conn.send(dict(api.rate_refusals))
            elif name == "peak_in_flight":  # the most API requests served at once
                conn.send(api.in_flight.peak)
            elif name == "reset_in_flight":  # count the most from now on
                api.in_flight.reset()
                conn.send(None)
            elif name == "credentials":  # every account's (public sandbox) keys
                conn.send(dict(sandbox.credentials))
            elif name == "origin_latency":
                sandbox.origin.latency = float(argument)
                conn.send(None)
            else:  # "stop"
                conn.send(None)
                return


class SandboxProcess:
    """``with SandboxProcess(spec) as sb:`` → ``sb.endpoints``, ``sb.env``, ``sb.ask()``."""

    def __init__(self, spec: SandboxSpec) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(spec, child), daemon=True)
        self.endpoints: dict[str, str] = {}
        self.env: dict[str, str] = {}

    def __enter__(self) -> SandboxProcess:
        self._process.start()
        if not self._conn.poll(60):
            self._process.kill()
            raise RuntimeError("the sandbox process did not start within 60 s")
        self.endpoints, self.env = self._conn.recv()
        return self

    def ask(self, command: str | tuple[str, object]) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with contextlib.suppress(EOFError, OSError):
            self.ask("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    @property
    def origin(self) -> str:
        return self.endpoints["origin"]

    @property
    def edge(self) -> str:
        return self.endpoints["edge"]


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table (readable in a terminal and in a README)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title, ""]
    for number, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs))
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def machine_load() -> str:
    """The 1-minute load average against the CPU count: wall-clock figures depend on it."""
    load = os.getloadavg()[0]
    return f"load average {load:.1f} on {os.cpu_count()} CPUs"
