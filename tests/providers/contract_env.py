"""Shared pieces of the provider contract suite: the per-kind environment and polling."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
import pytest

from cdn_preheat.cachestatus import parse_cache_status
from cdn_preheat.config import Settings
from cdn_preheat.providers.base import Provider, TaskState
from cdn_preheat.sandbox.server import Sandbox

# Long enough that PROCESSING is observable; tests advance the sandbox clock past it.
TASK_DELAY = 30.0


@dataclass
class ProviderEnv:
    """A running sandbox, a provider on it, and the few vendor-specific handles tests need."""

    kind: str
    sandbox: Sandbox
    provider: Provider
    # Builds another provider on the same sandbox from env overrides (e.g. a wrong secret).
    make_provider: Callable[[Mapping[str, str]], Provider]
    received_urls: Callable[[], list[str]]
    # None where the provider has no daily quota.
    set_daily_quota: Callable[[int], None] | None
    # The secret variable a wrong-credentials test corrupts; None: no credentials.
    secret_variable: str | None
    # Every variable an AuthError message must name.
    credential_variables: tuple[str, ...] = ()
    # Capabilities a kind may lack; a test that needs one skips the kinds without it.
    api_faults: bool = True  # the sandbox can fault this provider's API
    can_purge: bool = True
    tasks_finish_on_submit: bool = False  # no PROCESSING: the outcome is known on return
    # Qiniu has no quota query: its quota is unknown until a prefetch answer reports it,
    # and quota() answers from that (no API call, so no API fault reaches it).
    quota_known_before_submit: bool = True
    quota_calls_api: bool = True
    # What a prefetch of a file the origin lacks ends as. Alibaba documents no 4xx
    # failure description, so its provider cannot tell a 404 from a passing fault.
    missing_file_state: TaskState = TaskState.INVALID
    extra: dict[str, object] = field(default_factory=dict)
    # A real account (CDN_PREHEAT_LIVE=1): no sandbox (``sandbox`` is None), the URLs to
    # push come from CDN_PREHEAT_LIVE_URLS, and tasks take minutes, not a clock jump.
    live: bool = False
    live_urls: tuple[str, ...] = ()
    settle_timeout: float = 10.0
    poll_interval: float = 0.1

    def push_urls(self) -> list[str]:
        """What the push test spends quota on: the live file's URLs, or 3 of the sandbox's."""
        return list(self.live_urls) if self.live else self.urls(3)

    def right_secret(self) -> str:
        """The working value of ``secret_variable``, which a wrong-secret message must not hold."""
        assert self.secret_variable is not None
        if self.live:
            return os.environ.get(self.secret_variable, "")
        return self.sandbox.client_env(self.kind)[self.secret_variable]

    def urls(self, count: int, video: str = "demo-1") -> list[str]:
        """``count`` URLs the origin has, on the CDN domain."""
        paths = self.sandbox.origin.catalog_paths(video)
        assert count <= len(paths)
        return [self.sandbox.edge_url(p) for p in paths[:count]]

    def missing_url(self) -> str:
        return self.sandbox.edge_url("/vod/demo-1/v0/seg-missing.ts")

    def finish_tasks(self) -> None:
        if not self.live:  # a real CDN takes its own time: wait_for polls for it
            self.sandbox.clock.advance(dt.timedelta(seconds=TASK_DELAY + 1))

    def edge_hits(self, url: str) -> bool:
        """Whether the CDN answers ``url`` from cache, at the edge or from an upper layer
        (Tencent mainland and Alibaba prefetch into the middle/L2 layer); read from the
        answer's cache headers, as ``verify`` reads them. A one-byte probe: the sandbox
        edge does not store ranged answers."""
        response = httpx.get(url, headers={"Range": "bytes=0-0"})
        return parse_cache_status(response.headers).cached


def settings_from(env: Mapping[str, str]) -> Settings:
    """Settings from exactly these variables: no process environment, no .env file."""
    return Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]


T = TypeVar("T")


def wait_for(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float = 10.0,
    interval: float = 0.1,
) -> T:
    """Call ``probe`` until ``done`` holds for its result; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"still not done after {timeout} s: {result!r}")
        time.sleep(interval)
