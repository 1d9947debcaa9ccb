"""Shared pieces of the provider contract suite: the per-kind environment and polling."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
import pytest

from cdn_preheat.cachestatus import parse_cache_status
from cdn_preheat.config import Settings
from cdn_preheat.providers import emulated_names, make_provider, provider_spec
from cdn_preheat.providers.base import Provider, ProviderSpec, TaskState
from cdn_preheat.providers.http import HttpProvider, WarmOptions
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
    # They come from the provider's registration: see capabilities().
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
    # find_submitted asks the vendor's task list (Features.task_list): another process's
    # provider finds what this one submitted. False: only what this instance saw.
    reconciles_from_vendor: bool = True
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


def capabilities(spec: ProviderSpec, *, live: bool = False) -> dict[str, object]:
    """The suite's capability flags, from what the provider's registration declares.

    ``live``: a real account, where nothing is faulted and nothing is purged.
    """
    features = spec.features
    return {
        "api_faults": spec.emulator is not None and not live,
        "can_purge": features.purge and not live,
        "tasks_finish_on_submit": features.tasks_finish_on_submit,
        "quota_known_before_submit": features.quota_query or not features.daily_quota,
        "quota_calls_api": features.quota_query,
        "missing_file_state": (
            TaskState.INVALID if features.tells_missing_file else TaskState.FAILED
        ),
        "reconciles_from_vendor": features.task_list,
        "secret_variable": spec.credentials[-1] if spec.credentials else None,
        "credential_variables": spec.credentials,
    }


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


def _emulated_env(kind: str) -> ProviderEnv:
    """Any registered provider the sandbox emulates: built as the CLI builds it."""
    # The edge answers the vendor's own cache header (EdgeOne's EO-Cache-Status, ...),
    # which its emulator declares.
    sandbox = Sandbox(videos=2, segments=5, task_delay=TASK_DELAY, edge_vendor=kind)
    sandbox.start()
    emulator = sandbox.emulators[kind]
    api = sandbox.apis[kind]

    def make(overrides: Mapping[str, str]) -> Provider:
        return make_provider(settings_from({**sandbox.client_env(kind), **overrides}))

    def set_quota(per_day: int) -> None:
        emulator.set_limits(api, per_day, None)

    spec = provider_spec(kind)
    return ProviderEnv(
        kind=kind,
        sandbox=sandbox,
        provider=make({}),
        make_provider=make,
        received_urls=api.received_urls,
        set_daily_quota=set_quota if spec.features.daily_quota else None,
        **capabilities(spec),  # type: ignore[arg-type]
    )


def _http_env() -> ProviderEnv:
    sandbox = Sandbox(videos=2, segments=5)
    sandbox.start()

    def make(overrides: Mapping[str, str]) -> Provider:
        settings = settings_from({**sandbox.client_env("http"), **overrides})
        # One fetch at a time, so the edge receives the URLs in submission order.
        options = dataclasses.replace(WarmOptions.from_settings(settings), concurrency=1)
        return HttpProvider(settings, options=options)

    def received_urls() -> list[str]:
        # Warming is a full GET; the suite's own one-byte probes are not.
        requests = sandbox.edge.requests
        return [sandbox.edge_url(r.path) for r in requests if r.method == "GET" and not r.range]

    return ProviderEnv(
        kind="http",
        sandbox=sandbox,
        provider=make({}),
        make_provider=make,
        received_urls=received_urls,
        set_daily_quota=None,  # no daily quota (Features.daily_quota)
        **capabilities(provider_spec("http")),  # type: ignore[arg-type]
    )


# Every registered provider: the sandbox's emulated ones, and the http provider,
# which warms the sandbox edge itself. A provider registered with an emulator joins
# the suite with no entry here.
PROVIDER_KINDS: dict[str, Callable[[], ProviderEnv]] = {
    **{kind: functools.partial(_emulated_env, kind) for kind in emulated_names()},
    "http": _http_env,
}
