"""Running the CLI as a user does: a subprocess with only the user's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdn_preheat.sandbox.server import Sandbox

# Variables of the user's own environment that must not leak into these runs.
_CLEARED_PREFIXES = ("TENCENT_", "QINIU_", "ALIYUN_", "CDN_", "MONGODB_")


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    sandbox: Sandbox
    workdir: Path
    env: dict[str, str]

    def __call__(
        self, *args: str, extra_env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> Run:
        env = {**self.env, **(extra_env or {})}
        done = subprocess.run(
            [sys.executable, "-m", "cdn_preheat", *args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def status(self, video_id: str | None = None) -> Any:
        run = self("status", *([video_id] if video_id else []), "--json")
        assert run.code == 0, run.stderr
        return run.json()


def base_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED_PREFIXES)}
    env["CDN_PREHEAT_DB"] = str(workdir / "ledger.sqlite3")
    env["COLUMNS"] = "200"
    # Tencent "invalid" is pushed once more after this pause (30 s by default).
    env["CDN_PREHEAT_INVALID_RETRY_SECONDS"] = "0.2"
    # The sandbox's tasks end within a fraction of a second: look soon (1 s by default).
    env["CDN_PREHEAT_POLL_SECONDS"] = "0.1"
    return env
