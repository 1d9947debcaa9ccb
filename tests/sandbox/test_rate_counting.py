"""How the emulators count "N requests a second": a sliding second, the clock's
seconds, or a token bucket (``RateWindows``; no vendor document settles which).

The unit tests drive ``RateWindows`` with a fake clock; the HTTP ones stretch the
window to an hour so that nothing depends on how fast the test runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdn_preheat.config import Settings
from cdn_preheat.errors import InputError, RateLimited
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.core import RATE_COUNTINGS, RateCounting, RateWindows
from cdn_preheat.sandbox.server import Sandbox, parse_rate_counting
from cdn_preheat.sandbox.tencent import TencentLimits


def base_env(workdir: Path) -> dict[str, str]:
    """The environment of a user who set none of cdn-preheat's variables."""
    prefixes = ("TENCENT_", "QINIU_", "ALIYUN_", "CDN_", "MONGODB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["CDN_PREHEAT_DB"] = str(workdir / "ledger.sqlite3")
    return env


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def windows(counting: RateCounting, window: float = 1.0) -> tuple[RateWindows, FakeClock]:
    clock = FakeClock()
    return RateWindows(window, clock, counting=counting, phase=0.0), clock


def burst(rate: RateWindows, calls: int, limit: int = 5, key: str = "api") -> int:
    """How many of ``calls`` calls at one instant are let through."""
    return sum(rate.allow(key, limit) for _ in range(calls))


# -- each way of counting ---------------------------------------------------------------


@pytest.mark.parametrize("counting", RATE_COUNTINGS)
def test_every_counting_lets_a_burst_of_the_limit_through_and_refuses_one_more(
    counting: RateCounting,
) -> None:
    rate, _ = windows(counting)
    assert burst(rate, 6) == 5
    assert burst(rate, 1, key="other") == 1  # each key counts on its own


def test_sliding_window_refuses_a_second_burst_until_a_full_second_has_passed() -> None:
    rate, clock = windows("sliding")
    clock.now = 100.9
    assert burst(rate, 5) == 5
    clock.now = 101.1  # a new clock second, but the burst is 0.2 s old
    assert burst(rate, 5) == 0
    clock.now = 101.9  # the burst left the window (a hit exactly a window old is out)
    assert burst(rate, 6) == 5


def test_fixed_windows_take_twice_the_limit_across_a_boundary() -> None:
    rate, clock = windows("fixed")
    clock.now = 100.9
    assert burst(rate, 6) == 5
    clock.now = 101.1  # 0.2 s later, but in the next clock second
    assert burst(rate, 6) == 5
    clock.now = 101.99
    assert burst(rate, 1) == 0  # refused calls were not counted, nor is this second over


def test_fixed_windows_follow_the_phase_and_the_stretched_window() -> None:
    clock = FakeClock()
    rate = RateWindows(10.0, clock, counting="fixed", phase=5.0)  # windows [95, 105), [105, 115)
    clock.now = 104.0
    assert burst(rate, 6) == 5
    clock.now = 104.9
    assert burst(rate, 1) == 0
    clock.now = 105.0
    assert burst(rate, 6) == 5


def test_token_bucket_refills_continuously_up_to_the_limit() -> None:
    rate, clock = windows("bucket")
    assert burst(rate, 6) == 5
    clock.now += 0.2  # one token back (5 a second)
    assert burst(rate, 2) == 1
    clock.now += 0.5  # two and a half more: two calls, half a token left
    assert burst(rate, 3) == 2
    clock.now += 0.1  # half + half: one more
    assert burst(rate, 2) == 1
    clock.now += 60  # a long idle fills the bucket to the limit, not beyond
    assert burst(rate, 7) == 5


def test_token_bucket_counts_units_and_refuses_what_does_not_fit() -> None:
    rate, clock = windows("bucket")
    assert rate.allow("urls", 240, 200)
    assert not rate.allow("urls", 240, 100)  # 40 left: the request is refused whole
    assert rate.allow("urls", 240, 40)
    clock.now += 0.5  # 120 URLs back
    assert not rate.allow("urls", 240, 121)
    assert rate.allow("urls", 240, 120)


def test_a_bucket_refilled_for_exactly_a_window_admits_a_full_burst() -> None:
    # The sliding window admits a second burst exactly a window after the first;
    # float arithmetic must not make the bucket stricter than that.
    rate, clock = windows("bucket", window=0.3)
    for step in range(1, 20):
        clock.now = 100.0 + step * 0.3
        assert burst(rate, 5) == 5, step


def test_a_new_way_of_counting_starts_afresh() -> None:
    rate, _ = windows("sliding")
    assert burst(rate, 5) == 5
    rate.tune(1.0, "sliding")
    assert burst(rate, 1) == 0  # same counting: the window holds its calls
    rate.tune(1.0, "bucket")
    assert rate.counting == "bucket" and burst(rate, 6) == 5
    with pytest.raises(ValueError, match="counting"):
        rate.tune(1.0, "leaky")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="counting"):
        RateWindows(counting="leaky")  # type: ignore[arg-type]


# Arrivals a little apart (bursts included: several at one instant), each spending
# 1 to 3 units of a limit of 6.
ARRIVALS = st.lists(
    st.tuples(st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0]), st.integers(1, 3)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(arrivals=ARRIVALS, phase=st.floats(0.0, 1.0), window=st.sampled_from([1.0, 0.3, 2.5]))
def test_what_a_sliding_window_accepts_the_other_countings_accept(
    arrivals: list[tuple[float, int]], phase: float, window: float
) -> None:
    """The sliding window is the strictest reading: a client it never refuses
    (as cdn-preheat's limiter aims to be) is never refused by fixed windows or a
    full token bucket either."""
    clock = FakeClock()
    sliding = RateWindows(window, clock, counting="sliding")
    kept: list[tuple[float, int]] = []
    for gap, units in arrivals:
        clock.now += gap
        if sliding.allow("api", 6, units):
            kept.append((clock.now, units))
    for counting in ("fixed", "bucket"):
        clock.now = 0.0
        other = RateWindows(window, clock, counting=counting, phase=phase)
        for when, units in kept:
            clock.now = when
            assert other.allow("api", 6, units), (counting, when, kept)


# -- selected per sandbox, over HTTP ----------------------------------------------------


@pytest.fixture(params=RATE_COUNTINGS)
def counted(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    counting: RateCounting = request.param
    with Sandbox(
        videos=1,
        segments=3,
        tencent_limits=TencentLimits(task_delay=0, rate_window_seconds=3600),
        rate_counting=counting,
    ) as box:
        yield box


def test_the_sandbox_sets_every_emulators_counting(counted: Sandbox) -> None:
    counting = counted.tencent.limits.rate_counting
    for name in counted.apis:
        assert counted.apis[name].limits.rate_counting == counting  # type: ignore[attr-defined]
        document = httpx.get(f"{counted.endpoints[name]}/_sandbox/received", timeout=10).json()
        assert document["rate_counting"] == counting


def test_the_default_counting_is_the_sliding_window() -> None:
    with Sandbox(videos=1, segments=1) as box:
        assert {api.limits.rate_counting for api in box.apis.values()} == {"sliding"}  # type: ignore[attr-defined]


def test_every_counting_refuses_a_call_over_the_limit_over_http(counted: Sandbox) -> None:
    # One push an hour: the bucket gets a token back an hour later; fixed windows
    # are set to start now, so that no boundary of the clock falls in the test.
    counted.tencent.limits.action_rates = {"PushUrlsCache": 1}
    counted.tencent._rate.phase = -counted.tencent._rate.clock()
    env = counted.client_env("tencent")
    provider = TencentProvider(Settings(_env_file=None, **{k.lower(): v for k, v in env.items()}))  # type: ignore[call-arg]
    url = counted.edge_url("/vod/demo-1/v0/seg0.ts")
    provider.submit([url])
    with pytest.raises(RateLimited):
        provider.submit([url])
    assert counted.tencent.rate_refusals == {"PushUrlsCache": 1}
    assert counted.tencent.received_urls() == [url]


# -- the command's option ----------------------------------------------------------------


def test_rate_counting_option_is_parsed_or_refused_in_one_sentence() -> None:
    assert [parse_rate_counting(text) for text in ("sliding", " Fixed", "BUCKET")] == [
        "sliding",
        "fixed",
        "bucket",
    ]
    for bad in ("", "leaky", "token-bucket"):
        with pytest.raises(InputError, match="--rate-counting") as caught:
            parse_rate_counting(bad)
        assert caught.value.exit_code == 2 and str(caught.value).endswith(".")


def test_sandbox_command_refuses_an_unknown_counting(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "cdn_preheat", "sandbox", "--rate-counting", "leaky"],
        cwd=tmp_path,
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2 and "--rate-counting" in run.stderr
    assert "Traceback" not in run.stderr


OPTION = ("--rate-counting", "bucket")


@pytest.mark.slow
def test_sandbox_command_applies_the_counting_to_every_api(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cdn_preheat", "sandbox", *("--videos", "1"), *OPTION],
        cwd=tmp_path,
        env=base_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        endpoints = json.loads(line)
        for vendor in ("tencent", "aliyun", "qiniu", "edgeone"):
            document = httpx.get(f"{endpoints[vendor]}/_sandbox/received", timeout=10).json()
            assert document["rate_counting"] == "bucket", vendor
    finally:
        process.terminate()
        process.wait(timeout=30)
