"""Status calls per 500 URLs pushed, per vendor, end to end at each vendor's real limits.

    python bench/polling.py --provider aliyun            # 10,000 URLs, pushed and followed
    python bench/polling.py --provider all --urls 5000   # every emulated vendor in turn
    python bench/polling.py --provider qiniu --faults lost=0.05,drop=0.05

The sandbox (in its own process, as in bench/push.py) enforces each vendor's
documented limits (batch size, each API's calls a second) and adds 50 ms to
every API request; its tasks finish ``--task-delay`` seconds after they are
created. The URLs are queued in a temporary SQLite ledger and pushed and
followed to the end by the real engine (``run_queue``: scheduler + tracker)
through the vendor's provider and official SDK. The figures are the
emulator's counts: calls to the status APIs (task queries by id or by time,
and the task lists that reconcile lost answers), and calls refused for rate.

Qiniu documents no rate for its task queries: the emulator enforces the
provider's own pace (10 calls a second), so a refusal would show.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import logging
import resource
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _common import machine_load, table, verdict

VENDORS = ("tencent", "aliyun", "qiniu", "edgeone")
LATENCY = 0.05
# The APIs that answer "where do my tasks stand": polled by the tracker, listed to
# reconcile a lost answer (find_submitted). Qiniu's are routes.
STATUS_APIS = {
    "tencent": ("DescribePushTasks",),
    "aliyun": ("DescribeRefreshTaskById", "DescribeRefreshTasks"),
    "qiniu": ("/v2/tune/prefetch/list",),
    "edgeone": ("DescribePrefetchTasks",),
}
PUSH_APIS = {
    "tencent": "PushUrlsCache",
    "aliyun": "PushObjectCache",
    "qiniu": "/v2/tune/prefetch",
    "edgeone": "CreatePrefetchTask",
}
# Qiniu's undocumented task-query rate, enforced at the provider's own pace.
QINIU_LIST_RATE = 10


@dataclasses.dataclass(frozen=True)
class Spec:
    vendor: str
    segments: int
    quota: int
    task_delay: float
    faults: dict[str, float]
    merge_task_ids: bool = False


def _limits(spec: Spec) -> dict[str, Any]:
    """Each vendor's documented limits (the emulators' defaults), with a quota for the run."""
    from cdn_preheat.sandbox.aliyun import AliyunLimits
    from cdn_preheat.sandbox.edgeone import EdgeOneLimits
    from cdn_preheat.sandbox.qiniu import QiniuLimits
    from cdn_preheat.sandbox.tencent import TencentLimits

    delay = spec.task_delay
    return {
        "tencent": TencentLimits(push_per_day=spec.quota, task_delay=delay),
        "aliyun": AliyunLimits(
            preload_quota=spec.quota, task_delay=delay, merge_task_ids=spec.merge_task_ids
        ),
        "qiniu": QiniuLimits(
            prefetch_quota=spec.quota, task_delay=delay, list_calls_per_second=QINIU_LIST_RATE
        ),
        "edgeone": EdgeOneLimits(prefetch_per_day=spec.quota, task_delay=delay),
    }


def _counts(api: Any, vendor: str) -> dict[str, Any]:
    calls = {
        "tencent": lambda: api.actions,
        "aliyun": lambda: api.action_calls,
        "qiniu": lambda: api.calls,
        "edgeone": lambda: api.actions,
    }[vendor]()
    pushed = Counter(api.received_urls())
    twice = sum(n - 1 for n in pushed.values() if n > 1)
    return {"calls": dict(calls), "refused": dict(api.rate_refusals), "pushed_again": twice}


def _serve(spec: Spec, conn: Connection) -> None:
    from cdn_preheat.sandbox.core import Faults
    from cdn_preheat.sandbox.server import Sandbox

    faults = Faults(latency=LATENCY, seed=1, **spec.faults)
    sandbox = Sandbox(
        videos=1, variants=1, segments=spec.segments, limits=_limits(spec), faults=faults,
        edge_vendor=spec.vendor,  # type: ignore[arg-type]
    )  # fmt: skip
    gc.disable()  # as bench/_common.py: the emulator's GC pauses are not the API's
    with sandbox:
        conn.send((sandbox.edge.netloc, sandbox.client_env(spec.vendor)))
        api = sandbox.apis[spec.vendor]
        while True:
            try:
                command = conn.recv()
            except EOFError:
                return
            if command == "counts":
                conn.send(_counts(api, spec.vendor))
            elif command == "calm":  # faults off: the run's last look is undisturbed
                for name in spec.faults:
                    setattr(sandbox.faults, name, 0.0)
                conn.send(None)
            else:
                conn.send(None)
                return


def run(
    vendor: str, urls_wanted: int, delay: float, faults: dict[str, float], merge: bool = False
) -> dict[str, Any]:
    """One vendor's run in a fresh sandbox process: the emulator's counts and the times."""
    import multiprocessing

    spec = Spec(vendor, urls_wanted, 10 * urls_wanted, delay, faults, merge)
    context = multiprocessing.get_context("spawn")
    conn, child = context.Pipe()
    process = context.Process(target=_serve, args=(spec, child), daemon=True)
    process.start()
    try:
        if not conn.poll(60):
            raise RuntimeError("the sandbox process did not start within 60 s")
        edge, env = conn.recv()
        before, after, measured = _push_and_follow(conn, edge, env, urls_wanted, bool(faults))
    finally:
        conn.send("stop")
        conn.recv()
        process.join(10)
        if process.is_alive():
            process.kill()
    return _figures(vendor, urls_wanted, before, after, measured)


def _push_and_follow(
    conn: Connection, edge: str, env: dict[str, str], count: int, faulty: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Queue ``count`` URLs, push and follow them (run_queue): counts before, after, times."""
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import QueuedUrl
    from cdn_preheat.ledger.sqlite import SqliteLedger
    from cdn_preheat.pipeline import RunOptions, run_queue
    from cdn_preheat.providers import make_provider
    from cdn_preheat.tracker import TrackerOptions

    settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]
    provider = make_provider(settings)
    urls = [f"http://{edge}/vod/demo-1/v0/seg{i}.ts" for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        ledger = SqliteLedger(Path(tmp) / "bench.db")
        now = dt.datetime.now(dt.UTC)
        for first in range(0, len(urls), 5000):
            chunk = [QueuedUrl(url, "segment") for url in urls[first : first + 5000]]
            ledger.enqueue(
                f"bench-{first}", provider.name, provider.area, chunk, now, dt.timedelta(days=1)
            )
        conn.send("counts")
        before = conn.recv()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        options = RunOptions(tracker=TrackerOptions(timeout=600))
        run_queue(ledger, provider, options)
        if faulty:
            conn.send("calm")
            conn.recv()
            run_queue(ledger, provider, options)  # what the faults left, once more
        seconds = time.perf_counter() - started
        used = resource.getrusage(resource.RUSAGE_SELF)
        conn.send("counts")
        after = conn.recv()
        counts = ledger.counts()
        ledger.close()
    provider.close()
    cpu = (used.ru_utime - usage.ru_utime) + (used.ru_stime - usage.ru_stime)
    return before, after, {"seconds": seconds, "cpu": cpu, "counts": counts}


def _figures(
    vendor: str, urls: int, before: dict[str, Any], after: dict[str, Any], measured: dict[str, Any]
) -> dict[str, Any]:
    from cdn_preheat.ledger.base import UrlState

    counts = measured["counts"]
    calls = _delta(after["calls"], before["calls"])
    refused = _delta(after["refused"], before["refused"])
    status = sum(calls.get(api, 0) for api in STATUS_APIS[vendor])
    return {
        "vendor": vendor,
        "urls": urls,
        "done": counts.get(UrlState.DONE, 0),
        "left": sum(n for state, n in counts.items() if state is not UrlState.DONE),
        "pushes": calls.get(PUSH_APIS[vendor], 0),
        "pushed_again": after["pushed_again"] - before["pushed_again"],
        "status": {api: calls.get(api, 0) for api in STATUS_APIS[vendor]},
        "status_calls": status,
        "refused": dict(refused),
        "seconds": measured["seconds"],
        "cpu": measured["cpu"],
    }


def _delta(after: dict[str, int], before: dict[str, int]) -> Counter[str]:
    result = Counter(after)
    result.subtract(before)
    return +result


def _faults(text: str) -> dict[str, float]:
    names = {"5xx": "server_error", "drop": "drop", "lost": "lost_answer", "rate": "rate_limited"}
    faults = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        faults[names[name.strip()]] = float(value)
    return faults


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=(*VENDORS, "all"), default="all")
    parser.add_argument("--urls", type=int, default=10_000)
    parser.add_argument("--task-delay", type=float, default=1.0, help="seconds to a task's end")
    parser.add_argument(
        "--faults", default="", help="e.g. lost=0.05,drop=0.05 (5xx, drop, lost, rate)"
    )
    parser.add_argument(
        "--merge-task-ids",
        action="store_true",
        help="Alibaba: pushes of one second share a task id (500 URLs an id), as the SDK says",
    )
    args = parser.parse_args()
    # The engine's retry warnings (expected under --faults) would drown the tables.
    logging.basicConfig(level=logging.ERROR)
    vendors = VENDORS if args.provider == "all" else (args.provider,)
    faults = _faults(args.faults)
    print(
        f"{args.urls:,} URLs per vendor, pushed and followed to the end (run_queue) at each"
        f" vendor's documented limits, {LATENCY * 1000:.0f} ms per API request, tasks done"
        f" after {args.task_delay:g} s, faults {faults or 'none'}; {machine_load()}"
    )
    results = [
        run(vendor, args.urls, args.task_delay, faults, args.merge_task_ids) for vendor in vendors
    ]
    rows = []
    for r in results:
        per_500 = 500 * r["status_calls"] / max(r["urls"], 1)
        rows.append([
            r["vendor"], f"{r['urls']:,}", f"{r['done']:,}", f"{r['left']:,}", f"{r['pushes']:,}",
            f"{r['pushed_again']:,}", " + ".join(f"{api} {n}" for api, n in r["status"].items()),
            f"{per_500:.2f}", f"{sum(r['refused'].values())} {r['refused'] or ''}".strip(),
            f"{r['seconds']:.1f}", f"{r['cpu']:.1f}",
        ])  # fmt: skip
    print()
    print(
        table(
            f"Status calls per vendor (emulator's counts; {machine_load()} at the end)",
            ["vendor", "URLs", "done", "not done", "pushes", "URLs pushed again", "status calls",
             "per 500 URLs", "refused for rate", "wall s", "CPU s"],
            rows,
        )
    )  # fmt: skip
    print()
    targets = []
    for r in results:
        per_500 = 500 * r["status_calls"] / max(r["urls"], 1)
        refused = sum(r["refused"].values())
        targets += [
            [f"{r['vendor']}: status calls per 500 URLs", "<= 1", f"{per_500:.2f}",
             verdict(per_500 <= 1)],
            [f"{r['vendor']}: calls refused for rate", "0", f"{refused}", verdict(refused == 0)],
            [f"{r['vendor']}: every URL done", f"{r['urls']:,}", f"{r['done']:,}",
             verdict(r["done"] == r["urls"])],
            [f"{r['vendor']}: URLs pushed more than once", "0", f"{r['pushed_again']:,}",
             verdict(r["pushed_again"] == 0)],
        ]  # fmt: skip
    print(table("Targets", ["measure", "target", "measured", "result"], targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
