"""The README's sandbox block, run as written in a shell (only its ports moved).

The block uses ports 8080-8084 (and the sandbox binds 8085 for EdgeOne); the test
moves them to six free consecutive ports so that it never collides with anything
else on the machine.
"""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import base_env

ROOT = Path(__file__).resolve().parents[2]
README_PORTS = range(8080, 8086)  # the last: the EdgeOne API the sandbox also starts


def sandbox_block() -> str:
    section = ROOT.joinpath("README.md").read_text().split("## The sandbox", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "the README's sandbox section has a bash block"
    return match.group(1)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports that are free now."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError("no free ports")


@pytest.mark.slow
def test_the_readme_sandbox_block_works_as_written(tmp_path: Path) -> None:
    block = sandbox_block()
    base = free_ports(len(README_PORTS))
    for offset, port in enumerate(README_PORTS):
        block = block.replace(str(port), str(base + offset))
    script = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + block
    env = base_env(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.pop("CDN_PREHEAT_DB")  # as a user runs it: the ledger in the working directory
    run = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    received = [
        json.loads(line) for line in run.stdout.splitlines() if line.startswith('{"vendor"')
    ]
    (tencent,) = received
    assert tencent["vendor"] == "tencent" and tencent["outcomes"]["ok"] >= 1
    pushed = {url for item in tencent["accepted"] for url in item["urls"]}
    assert f"http://127.0.0.1:{base + 1}/vod/demo-1/master.m3u8" in pushed
    assert all("/vod/demo-1/" in url for url in pushed)
    assert "Traceback" not in run.stderr
    # The Qiniu batch found every video of the demo bucket and pushed it to the end.
    status = subprocess.run(
        [sys.executable, "-m", "cdn_preheat", "status", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    videos = {v["video_id"]: v for v in json.loads(status.stdout)["videos"]}
    assert set(videos) == {"demo-1", "vod/demo-1/master", "vod/demo-2/master", "vod/demo-3/master"}
    assert all(v["state"] == "done" and v["done"] == v["found"] > 0 for v in videos.values())
