"""Push throughput at Tencent Cloud's real limits, against the sandbox API.

    python bench/push.py                   # 200,000 URLs; old way on 20,000
    python bench/push.py --urls 40000 --old-urls 4000 --concurrency 8

The sandbox (in its own process) enforces 500 URLs a request and 20
requests a second, and adds 50 ms to every API request. The URLs (edge-host
URLs of the sandbox catalog) are queued in a temporary SQLite ledger, then
drained by the real Scheduler through the TencentProvider (official SDK); the
ceiling is 500 x 20 = 10,000 URLs/s. Tasks are not tracked: this measures
pushing. In the same run, the old script's way: the official SDK called
directly, batches of 100, a 50 ms sleep after each, on a smaller sample.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from _common import SandboxProcess, SandboxSpec, machine_load, table, verdict

BATCH = 500
RATE = 20
LATENCY = 0.05
CEILING = BATCH * RATE
TARGET_SHARE = 0.95
OLD_BATCH = 100
OLD_SLEEP = 0.05


def catalog_paths(variants: int, segments: int) -> Iterator[str]:
    """Paths of the sandbox catalog, video after video, without end."""
    from cdn_preheat.sandbox.origin import Origin

    n = 0
    while True:
        n += 1
        catalog = Origin(videos=n, variants=variants, segments=segments)
        yield from catalog.catalog_paths(f"demo-{n}")


def edge_urls(edge: str, count: int, variants: int, segments: int) -> list[str]:
    """``count`` distinct edge-host URLs the origin has (keys repeat per rendition)."""
    urls: dict[str, None] = {}
    for path in catalog_paths(variants, segments):
        if len(urls) == count:
            break
        urls[f"http://{edge}{path}"] = None
    return list(urls)


def settings_for(env: dict[str, str]) -> object:
    from cdn_preheat.config import Settings

    return Settings(_env_file=None, **{name.lower(): value for name, value in env.items()})  # type: ignore[call-arg]


def run_scheduler(
    env: dict[str, str],
    urls: list[str],
    concurrency: int,
    workdir: Path,
    sent: list[float],
    round_trips: list[float],
    by_task: dict[str, float],
) -> tuple[float, float, object]:
    """(enqueue seconds, drain seconds, DrainReport) for ``urls`` through the real stack."""
    from cdn_preheat.ledger.base import QueuedUrl
    from cdn_preheat.ledger.sqlite import SqliteLedger
    from cdn_preheat.providers.base import SubmitResult
    from cdn_preheat.providers.tencent import TencentProvider
    from cdn_preheat.scheduler import Scheduler, SchedulerOptions

    settings = settings_for(env)
    provider = TencentProvider(settings)  # type: ignore[arg-type]
    ledger = SqliteLedger(workdir / "bench.db")
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    per_video = 5000
    for first in range(0, len(urls), per_video):
        chunk = [QueuedUrl(url, "segment") for url in urls[first : first + per_video]]
        ledger.enqueue(
            f"bench-{first // per_video}", provider.name, provider.area, chunk, now,
            dt.timedelta(days=1),
        )  # fmt: skip
    enqueue_seconds = time.perf_counter() - started
    scheduler = Scheduler(ledger, provider, SchedulerOptions(concurrency=concurrency))
    submit = provider.submit

    def timed_submit(batch: Sequence[str]) -> SubmitResult:
        released = time.time()  # when the scheduler let this request go
        sent.append(released)
        started = time.perf_counter()
        try:
            result = submit(batch)
        finally:
            round_trips.append(time.perf_counter() - started)
        by_task[result.task_id] = released
        return result

    provider.submit = timed_submit  # type: ignore[method-assign]
    started = time.perf_counter()
    report = scheduler.drain()
    drain_seconds = time.perf_counter() - started
    ledger.close()
    return enqueue_seconds, drain_seconds, report


def jitter_report(sent: list[float], accepted: dict[str, float], by_task: dict[str, float]) -> str:
    """How far apart requests left the client, and how late they reached the rate check."""
    if len(sent) <= RATE:
        return "too few requests for a jitter figure"
    tightest = min(sent[i + RATE] - sent[i] for i in range(len(sent) - RATE))
    delays = sorted(accepted[task] - released for task, released in by_task.items())
    if not delays:
        return ""
    median = delays[len(delays) // 2]
    return (
        f"any {RATE + 1} consecutive requests left the client >= {tightest * 1000:.0f} ms apart;"
        f" release to the emulator's check took median {median * 1000:.0f} ms,"
        f" p99 {delays[int(len(delays) * 0.99)] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
        f" (spread max - min {(delays[-1] - delays[0]) * 1000:.0f} ms: a request that"
        " reaches the check that much later than the one 20 after it shares its window)"
    )


def run_old_way(env: dict[str, str], urls: list[str]) -> tuple[float, int]:
    """The old preheat.py: SDK directly, batches of 100, sleep 50 ms. (seconds, errors)."""
    from urllib.parse import urlsplit

    from tencentcloud.cdn.v20180606 import cdn_client, models
    from tencentcloud.common.credential import Credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    endpoint = urlsplit(env["TENCENT_ENDPOINT"])
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=endpoint.netloc))
    credential = Credential(env["TENCENT_SECRET_ID"], env["TENCENT_SECRET_KEY"])
    client = cdn_client.CdnClient(credential, "ap-guangzhou", profile)
    errors = 0
    started = time.perf_counter()
    for first in range(0, len(urls), OLD_BATCH):
        request = models.PushUrlsCacheRequest()
        request.Urls = urls[first : first + OLD_BATCH]
        try:
            client.PushUrlsCache(request)
            time.sleep(OLD_SLEEP)  # 防止頻率超標, as the old script did
        except Exception:  # the old script stopped here; count and go on
            errors += 1
    return time.perf_counter() - started, errors


def delta(after: dict[str, int], before: dict[str, int]) -> Counter[str]:
    result = Counter(after)
    result.subtract(before)
    return +result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", type=int, default=200_000)
    parser.add_argument("--old-urls", type=int, default=20_000, help="old-way sample size")
    parser.add_argument("--concurrency", type=int, default=4, help="SchedulerOptions.concurrency")
    parser.add_argument(
        "--sandbox-priority",
        type=int,
        default=0,
        help="renice the sandbox process by -N (needs root): the CDN API is another machine,"
        " this keeps this machine's load out of the emulator's rate check",
    )
    parser.add_argument(
        "--sandbox-gc",
        action="store_true",
        help="keep Python's cyclic GC on in the sandbox process: its pauses then delay the"
        " emulator's rate check, and the client earns rate-limit answers it did not cause",
    )
    args = parser.parse_args()

    spec = SandboxSpec(
        videos=1, variants=4, segments=1000, push_batch=BATCH, requests_per_second=RATE,
        push_per_day=10 * (args.urls + args.old_urls), task_delay=3600.0, latency=LATENCY,
        nice=-args.sandbox_priority, sandbox_gc=args.sandbox_gc,
    )  # fmt: skip
    print(
        f"{args.urls:,} URLs at {BATCH} URLs/request, {RATE} requests/s, {LATENCY * 1000:.0f} ms"
        f" per API request; scheduler concurrency {args.concurrency};"
        f" sandbox priority +{args.sandbox_priority},"
        f" sandbox GC on {args.sandbox_gc};"
        f" {machine_load()}"
    )
    with SandboxProcess(spec) as sandbox, tempfile.TemporaryDirectory() as tmp:
        urls = edge_urls(sandbox.edge, args.urls, spec.variants, spec.segments)
        before = sandbox.ask("outcomes")
        sent: list[float] = []
        round_trips: list[float] = []
        by_task: dict[str, float] = {}
        enqueue_seconds, seconds, report = run_scheduler(
            sandbox.env, urls, args.concurrency, Path(tmp), sent, round_trips, by_task
        )
        ours = delta(sandbox.ask("outcomes"), before)
        accepted = sandbox.ask("push_times")
        old_urls = urls[: args.old_urls]
        before = sandbox.ask("outcomes")
        old_seconds, old_errors = run_old_way(sandbox.env, old_urls)
        theirs = delta(sandbox.ask("outcomes"), before)
        received = sandbox.ask("received")
        load = machine_load()

    submitted = report.submitted  # type: ignore[attr-defined]
    rate = submitted / seconds
    old_rate = len(old_urls) / old_seconds
    wasted = report.wasted_requests  # type: ignore[attr-defined]
    requests = report.requests  # type: ignore[attr-defined]
    rejected = ours.get("rate_limited", 0)
    print()
    print(
        table(
            "Push",
            ["", "URLs", "seconds", "URLs/s", "of ceiling", "API requests", "rate-limited"],
            [
                ["Scheduler + TencentProvider", f"{submitted:,}", f"{seconds:.2f}",
                 f"{rate:,.0f}", f"{rate / CEILING:.2%}", f"{requests:,}",
                 f"{report.rate_limited}"],  # type: ignore[attr-defined]
                [f"old way (SDK, {OLD_BATCH}/request, sleep)", f"{len(old_urls):,}",
                 f"{old_seconds:.2f}", f"{old_rate:,.0f}", f"{old_rate / CEILING:.2%}",
                 f"{-(-len(old_urls) // OLD_BATCH):,}", f"{theirs.get('rate_limited', 0)}"],
            ],
        )
    )  # fmt: skip
    print(
        f"\nold way, scaled to {submitted:,} URLs: {submitted / old_rate:.1f} s"
        f" ({submitted / old_rate / seconds:.1f}x the scheduler's time); it is sequential,"
        f" so time scales linearly with URLs ({old_errors} failed requests)."
    )
    print(
        f"queueing {len(urls):,} URLs in the SQLite ledger took {enqueue_seconds:.2f} s (not in"
        f" the push figure); emulator answers to the scheduler: {dict(ours)};"
        f" DrainReport: requests {requests}, rate_limited {report.rate_limited},"  # type: ignore[attr-defined]
        f" transient {report.transient}; emulator received {received:,} URLs in all"  # type: ignore[attr-defined]
    )
    print(jitter_report(sent, accepted, by_task))
    trips = sorted(round_trips)
    cycle = seconds * args.concurrency / max(len(trips), 1)
    print(
        f"PushUrlsCache round trip: median {trips[len(trips) // 2] * 1000:.0f} ms,"
        f" p95 {trips[int(len(trips) * 0.95)] * 1000:.0f} ms (50 ms of it injected latency);"
        f" each of the {args.concurrency} workers took {cycle * 1000:.0f} ms a batch on average"
        f" (the rate allows {args.concurrency / RATE * 1000:.0f} ms)"
    )
    print()
    rows = [
        ["URLs/s vs ceiling 10,000", f">= {TARGET_SHARE:.0%}", f"{rate / CEILING:.2%}",
         verdict(rate >= TARGET_SHARE * CEILING)],
        ["requests rejected for rate (emulator)", "0", f"{rejected}", verdict(rejected == 0)],
        ["requests wasted (DrainReport)", "0",
         f"{wasted} of {requests} ({wasted / max(requests, 1):.1%})", verdict(wasted == 0)],
        ["all URLs submitted", f"{len(urls):,}", f"{submitted:,}", verdict(submitted == len(urls))],
    ]  # fmt: skip
    print(table(f"Targets ({load} at the end)", ["measure", "target", "measured", "result"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
