"""Time from Ctrl-C (SIGINT) to exit for `push` and `batch`, and URLs pushed after it.

Each run starts the CLI as a user does (`python -m cdn_preheat ...`, a fresh
ledger) against the sandbox in its own process, waits until the CDN received
its first batches, sends SIGINT, and measures until the process exits: the
wall time, the exit code (130 promised) and how many URLs reached the CDN
after the signal (at most one batch per pushing thread: the ones in flight),
and the CPU time (user+sys) of the whole CLI run. ``batch (expanding)`` adds
a video whose origin sends one byte a second: the signal lands while that
playlist is still being read and the other videos are pushed (the pipeline).

    python bench/signals.py                      # 5 runs each, ~1 min
    python bench/signals.py --runs 3 --latency 0.3
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from _common import SandboxProcess, SandboxSpec, machine_load, table, verdict

TARGET_SECONDS = 2.0


class _Trickle(BaseHTTPRequestHandler):
    """A media playlist at one byte a second (its fetch lasts minutes): ``hits`` counts."""

    hits = 0
    lock = threading.Lock()
    body = "\n".join(
        ["#EXTM3U", "#EXT-X-TARGETDURATION:4"]
        + [f"#EXTINF:4.0,\nslow-{n}.ts" for n in range(100)]
        + ["#EXT-X-ENDLIST", ""]
    ).encode()

    def do_GET(self) -> None:
        with _Trickle.lock:
            _Trickle.hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.apple.mpegurl")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        try:
            for offset in range(len(self.body)):
                self.wfile.write(self.body[offset : offset + 1])
                self.wfile.flush()
                time.sleep(1.0)
        except OSError:
            return  # the client went away: what the signal makes it do

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _one_run(
    sandbox: SandboxProcess,
    command: list[str],
    env: dict[str, str],
    workdir: Path,
    expanding: bool = False,
) -> tuple[float, int, int, float]:
    """(seconds from SIGINT to exit, exit code, URLs received after the signal, CPU s)."""
    before = sandbox.ask("received")
    hits = _Trickle.hits
    cpu = _cpu_of_children()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdn_preheat", *command],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while sandbox.ask("received") - before < 2 * int(env["CDN_PREHEAT_BATCH_SIZE"]) or (
        expanding and _Trickle.hits == hits
    ):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{command[0]} ended before the signal: make the catalog larger")
        time.sleep(0.005)
    at_signal = sandbox.ask("received")
    signalled = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(120)
    elapsed = time.monotonic() - signalled
    return elapsed, code, sandbox.ask("received") - at_signal, _cpu_of_children() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--segments", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50, help="CDN_PREHEAT_BATCH_SIZE")
    parser.add_argument("--concurrency", type=int, default=4, help="CDN_PREHEAT_CONCURRENCY")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per API call")
    args = parser.parse_args()

    spec = SandboxSpec(
        videos=args.videos, segments=args.segments, latency=args.latency, task_delay=0.5
    )
    rows = []
    passed = True
    from cdn_preheat.sandbox.core import LoopbackServer

    trickle = LoopbackServer(_Trickle, None)
    trickle.start()
    with SandboxProcess(spec) as sandbox, tempfile.TemporaryDirectory() as tmp:
        catalog = Path(tmp) / "videos.csv"
        videos = "".join(
            f"demo-{i},{sandbox.origin}/vod/demo-{i}/master.m3u8\n"
            for i in range(1, args.videos + 1)
        )
        catalog.write_text(videos)
        slow_catalog = Path(tmp) / "slow.csv"
        slow_catalog.write_text(f"{videos}slow,{trickle.url}/slow.m3u8\n")
        commands = {
            "push": ["push", "demo-1", f"{sandbox.origin}/vod/demo-1/master.m3u8"],
            "batch": ["batch", str(catalog)],
            "batch (expanding)": ["batch", str(slow_catalog)],
        }
        for name, command in commands.items():
            times, after, codes, cpus = [], [], [], []
            for run in range(args.runs):
                workdir = Path(tmp) / f"{name}-{run}"
                workdir.mkdir()
                env = {
                    **{k: v for k, v in os.environ.items() if not k.startswith("CDN_")},
                    **sandbox.env,
                    "CDN_PREHEAT_DB": str(workdir / "ledger.sqlite3"),
                    "CDN_PREHEAT_BATCH_SIZE": str(args.batch),
                    "CDN_PREHEAT_CONCURRENCY": str(args.concurrency),
                }
                elapsed, code, late, cpu = _one_run(
                    sandbox, command, env, workdir, expanding="expanding" in name
                )
                times.append(elapsed)
                codes.append(code)
                after.append(late)
                cpus.append(cpu)
            bound = args.concurrency * args.batch
            ok = (
                statistics.median(times) <= TARGET_SECONDS
                and all(code == 130 for code in codes)
                and max(after) <= bound
            )
            passed = passed and ok
            rows.append(
                [
                    name,
                    f"{statistics.median(times):.2f}",
                    f"{max(times):.2f}",
                    ",".join(sorted({str(c) for c in codes})),
                    f"{statistics.median(after):.0f}",
                    f"{max(after)} (bound {bound})",
                    f"{statistics.median(cpus):.2f}",
                    verdict(ok),
                ]
            )
    print(
        table(
            f"SIGINT to exit: {args.runs} runs each, batch {args.batch}, {args.concurrency}"
            f" threads, {args.latency:.2f} s per API call; {machine_load()}",
            [
                "command",
                "median s",
                "max s",
                "exit codes",
                "URLs after signal (median)",
                "max",
                "CLI CPU s (median)",
                f"≤ {TARGET_SECONDS:.0f} s, 130",
            ],
            rows,
        )
    )
    trickle.stop()
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
