"""The README's HTTP API block, run as written in bash against `demo --serve`.

Only the demo's address changes (it runs on a free port) and the two lines that
start the demo and export what it printed are done by the test itself.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_URL = "http://127.0.0.1:8000"


def api_block() -> str:
    section = ROOT.joinpath("README.md").read_text().split("## The HTTP API", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "the README's HTTP API section has a bash block"
    return match.group(1)


def json_values(text: str) -> list[Any]:
    decoder, values, index = json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        if not text.startswith(("{", "["), index):
            break
        value, index = decoder.raw_decode(text, index)
        values.append(value)
    return values


@pytest.mark.slow
def test_the_readme_api_block_works_against_demo_serve(tmp_path: Path) -> None:
    block = api_block()
    lines = block.splitlines()
    assert lines[0].startswith("cdn-preheat demo --serve")
    assert lines[1].startswith("export TOKEN=")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDN_", "TENCENT_"))}
    demo = subprocess.Popen(
        [sys.executable, "-m", "cdn_preheat", "demo", "--serve", "--port", "0"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    printed: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            printed.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = exports = ""
        while not (url and exports):
            line = printed.get(timeout=60)
            if "API docs" in line:
                url = line.split()[-1].removesuffix("/docs")
            if line.strip().startswith("export TOKEN="):
                exports = line.strip()
        script = "set -euo pipefail\n" + exports + "\n"
        script += "\n".join(lines[2:]).replace(README_URL, url)
        run = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr + run.stdout
    finally:
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=60)
    assert code == 0, demo.stderr.read() if demo.stderr else ""
    posted, fetched, page, batch, quota = json_values(run.stdout)
    assert posted["video_id"] == "ep-1" and posted["counts"]["pending"] > 0
    assert fetched["video_id"] == "ep-1"
    assert set(page) == {"videos", "next_cursor"}
    assert [(r["video_id"], r["status"]) for r in batch["results"]] == [("ep-2", 202)]
    assert quota["quota"][0]["provider"] == "tencent"
    assert re.search(r"(^|})cdn_preheat_queue_depth \d", run.stdout, re.MULTILINE)
    token = exports.split("TOKEN=", 1)[1].split()[0]
    assert token not in (demo.stderr.read() if demo.stderr else "")


def targets_block() -> str:
    section = ROOT.joinpath("README.md").read_text().split("**Several targets.**", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "the README's targets paragraph has a bash block"
    return match.group(1)


def lines_of(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.mark.slow
def test_the_readme_targets_block_works_against_sandbox_and_serve(tmp_path: Path) -> None:
    import time

    import httpx

    lines = targets_block().splitlines()
    assert lines[0].startswith("cdn-preheat sandbox --targets targets.toml")
    assert lines[1].startswith("export CDN_PREHEAT_TARGETS=targets.toml")
    assert lines[2].startswith("CDN_PREHEAT_ALLOWED_NETWORKS=127.0.0.1/32 cdn-preheat serve")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDN_", "TENCENT_"))}
    command = [sys.executable, "-m", "cdn_preheat"]
    sandbox = subprocess.Popen(
        [*command, "sandbox", "--targets", "targets.toml", "--videos", "1", "--segments", "4"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    serve: subprocess.Popen[str] | None = None
    try:
        assert sandbox.stdout is not None
        printed = json.loads(lines_of(sandbox.stdout).get(timeout=60))
        exported = {k: v for k, v in printed.items() if k.isupper()}
        assert exported["CDN_PREHEAT_TARGETS"].endswith("targets.toml")
        env |= exported | {"ORIGIN": printed["origin"]}
        serve = subprocess.Popen(
            [*command, "serve", "--port", "0"], cwd=tmp_path,
            env=env | {"CDN_PREHEAT_ALLOWED_NETWORKS": "127.0.0.1/32"},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert serve.stderr is not None
        logged = lines_of(serve.stderr)
        url = ""
        while not url:
            line = logged.get(timeout=60)
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].split()[0]
        script = "set -euo pipefail\n" + "\n".join(lines[3:]).replace(README_URL, url)
        run = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr + run.stdout
        posted, fetched, quota, verified = json_values(run.stdout)
        names = ["tencent", "tencent-b", "qiniu", "edgeone"]
        assert [t["name"] for t in posted["targets"]] == names
        assert fetched["video_id"] == "ep-1" and len(fetched["targets"]) == 4
        assert [q["target"] for q in quota["quota"]] == names
        assert all(q["error"] is None for q in quota["quota"])
        assert [t["name"] for t in verified["targets"]] == names
        deadline = time.monotonic() + 60  # the worker pushes it to every account
        while True:
            record = httpx.get(f"{url}/v1/videos/ep-1").json()
            if record["state"] == "done":
                break
            assert time.monotonic() < deadline, record
            time.sleep(0.2)
        found = sum(posted["targets"][0]["counts"].values())  # every URL, queued for each
        for target in record["targets"]:
            assert target["state"] == "done" and target["counts"]["done"] == found, target
            assert target["progress"] == 1.0
    finally:
        for process in (serve, sandbox):
            if process is not None:
                process.send_signal(signal.SIGTERM)
        if serve is not None:
            assert serve.wait(timeout=60) == 0
        sandbox.wait(timeout=60)
