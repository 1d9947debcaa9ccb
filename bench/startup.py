"""Start-up time: ``cdn-preheat --help``, against ``python -c pass``.

    python bench/startup.py               # 15 runs each
    python bench/startup.py --runs 5

Wall time of whole subprocesses (median, after one warm-up run each), and
``python -X importtime`` of the same ``--help`` so that a regression can be
attributed to the module that brought it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import machine_load, table, verdict

TARGET_MS = 300.0


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("cdn-preheat")
    if script.exists():
        return [str(script)]
    found = shutil.which("cdn-preheat")
    return [found] if found else [sys.executable, "-m", "cdn_preheat"]


def median_ms(command: list[str], runs: int) -> tuple[float, float, float]:
    """(median, min, max) wall milliseconds of ``command`` over ``runs`` runs."""
    env = {**os.environ, "NO_COLOR": "1"}
    subprocess.run(command, check=True, capture_output=True, env=env)  # warm the page cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times), max(times)


def import_times(top: int) -> tuple[list[tuple[str, int, int]], int]:
    """The ``top`` slowest imports of ``--help`` by cumulative time, and the total (us)."""
    command = [sys.executable, "-X", "importtime", "-m", "cdn_preheat", "--help"]
    stderr = subprocess.run(command, check=True, capture_output=True, text=True).stderr
    rows: list[tuple[str, int, int]] = []
    total = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((name.strip(), int(self_us), int(cumulative_us)))
        if depth <= 1:
            total += int(cumulative_us)
    by_cumulative = sorted(rows, key=lambda row: row[2], reverse=True)
    return by_cumulative[:top], total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--top", type=int, default=15, help="imports to list")
    args = parser.parse_args()

    cli = cli_command()
    print(f"{' '.join(cli)} --help, {args.runs} runs each; {machine_load()}")
    floor = median_ms([sys.executable, "-c", "pass"], args.runs)
    help_ = median_ms([*cli, "--help"], args.runs)
    imports, total = import_times(args.top)
    load = machine_load()

    print()
    print(
        table(
            "Wall time of a whole process (ms)",
            ["command", "median", "min", "max"],
            [
                ["python -c pass (the floor)", *(f"{v:.0f}" for v in floor)],
                ["cdn-preheat --help", *(f"{v:.0f}" for v in help_)],
                ["  difference: cdn-preheat's own", f"{help_[0] - floor[0]:.0f}", "", ""],
            ],
        )
    )
    print()
    print(
        table(
            f"Slowest imports of --help (python -X importtime; all imports: {total / 1000:.0f} ms)",
            ["module", "self ms", "cumulative ms"],
            [[name, f"{s / 1000:.1f}", f"{c / 1000:.1f}"] for name, s, c in imports],
        )
    )
    print()
    rows = [
        ["cdn-preheat --help, median", f"< {TARGET_MS:.0f} ms", f"{help_[0]:.0f} ms",
         verdict(help_[0] < TARGET_MS)],
    ]  # fmt: skip
    print(table(f"Targets ({load} at the end)", ["measure", "target", "measured", "result"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
