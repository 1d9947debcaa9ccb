"""The HTTP service under load: POST /v1/videos and GET /v1/videos/{id} at 50 clients.

Three processes: the sandbox (origin and CDN APIs, spawned, see _common), the
service (``cdn-preheat serve`` exactly as run in production, on a fresh SQLite
ledger), and this one, whose clients are asyncio tasks sharing one
``httpx.AsyncClient`` (one connection each). Measured:

- ``POST /v1/videos``: each request names a new video, so the service expands
  its master and variant playlists from the sandbox origin (over loopback,
  through the SSRF guard) and queues its URLs before answering 202;
- ``GET /v1/videos/{id}``: a known video's record (its URL counts and errors);
- the service's resident memory at the end and at its peak (VmRSS, VmHWM).

By default the service runs with ``--no-worker`` so the figures are the API's
alone; ``--worker`` runs the worker beside it (the pushes then share the CPU).

    python bench/serve.py                          # 2,000 POSTs, 5,000 GETs, 50 clients
    python bench/serve.py --videos 200 --gets 1000  # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from _common import SandboxProcess, SandboxSpec, machine_load, table

TOKEN = "bench-serve-token-0123456789"  # noqa: S105 - the bench service's own


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of the process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def load(
    client: httpx.AsyncClient, requests: list[tuple[str, str, dict[str, str] | None]], clients: int
) -> tuple[float, list[float], dict[int, int]]:
    """Send ``requests`` from ``clients`` tasks; (seconds, latencies, status counts)."""
    pending = iter(requests)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one_client() -> None:
        for method, path, body in pending:
            started = time.perf_counter()
            answer = await client.request(method, path, json=body)
            latencies.append(time.perf_counter() - started)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return time.perf_counter() - began, latencies, statuses


def start_service(
    workdir: Path, env: dict[str, str], worker: bool
) -> tuple[subprocess.Popen[bytes], str]:
    """The service process and its URL; its log goes to a file (a pipe left unread
    would fill and stall it)."""
    log = (workdir / "serve.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "cdn_preheat", "serve", "--port", "0",
         "--worker" if worker else "--no-worker"],
        cwd=workdir, env=env, stderr=log, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and service.poll() is None:
        text = (workdir / "serve.log").read_text(errors="replace")
        if "listening on " in text:
            return service, text.split("listening on ", 1)[1].split()[0]
        time.sleep(0.1)
    raise RuntimeError(f"the service did not start: {(workdir / 'serve.log').read_text()}")


async def run(args: argparse.Namespace, url: str, origin: str, pid: int) -> None:
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=120
    ) as client:
        catalog = [f"{origin}/vod/demo-{n + 1}/master.m3u8" for n in range(args.catalog)]
        posts = [
            (
                "POST",
                "/v1/videos",
                {"video_id": f"bench-{n}", "m3u8_url": catalog[n % len(catalog)]},
            )
            for n in range(args.videos)
        ]
        post_time, post_latency, post_status = await load(client, posts, args.clients)
        rng = random.Random(1)
        gets = [
            ("GET", f"/v1/videos/bench-{rng.randrange(args.videos)}", None)
            for _ in range(args.gets)
        ]
        get_time, get_latency, get_status = await load(client, gets, args.clients)
    rss, peak = memory_mb(pid)

    def row(
        name: str, count: int, seconds: float, latency: list[float], status: object
    ) -> list[object]:
        p50, p99 = percentile(latency, 0.5) * 1000, percentile(latency, 0.99) * 1000
        return [name, count, f"{count / seconds:,.0f}", f"{p50:.1f}", f"{p99:.1f}", status]

    rows = [
        row("POST /v1/videos (expand + queue)", args.videos, post_time, post_latency, post_status),
        row("GET /v1/videos/{id}", args.gets, get_time, get_latency, get_status),
    ]
    print(
        table(
            f"cdn-preheat serve, {args.clients} concurrent clients "
            f"({'with' if args.worker else 'no'} worker; {machine_load()})",
            ["route", "requests", "req/s", "p50 ms", "p99 ms", "statuses"],
            rows,
        )
    )
    print(f"\nservice RSS: {rss:.0f} MB at the end, {peak:.0f} MB at its peak")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=2000, help="POSTs, one new video each")
    parser.add_argument("--gets", type=int, default=5000, help="GETs of known videos")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--catalog", type=int, default=50, help="distinct sandbox videos")
    parser.add_argument("--segments", type=int, default=100, help="segments per variant")
    parser.add_argument("--worker", action="store_true", help="run the worker in the service")
    args = parser.parse_args()
    spec = SandboxSpec(videos=args.catalog, segments=args.segments, task_delay=0.2)
    with SandboxProcess(spec) as sandbox, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CDN_", "TENCENT_"))}
        env.update(sandbox.env)
        env.update({
            "CDN_PREHEAT_DB": str(Path(tmp) / "ledger.sqlite3"),
            "CDN_PREHEAT_API_TOKENS": TOKEN,
            "CDN_PREHEAT_ALLOWED_NETWORKS": "127.0.0.1/32",
        })  # fmt: skip
        service, url = start_service(Path(tmp), env, args.worker)
        try:
            asyncio.run(run(args, url, sandbox.origin, service.pid))
        finally:
            service.terminate()
            service.wait(60)


if __name__ == "__main__":
    main()
