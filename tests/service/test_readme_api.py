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
