"""End-to-end fixtures: a sandbox in this process, the CLI in a subprocess.

The CLI runs exactly as a user runs it (``python -m cdn_preheat``), with only
the environment a user would set, talking to the sandbox over real HTTP.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ too, for the scripted origin (slow, broken or hostile playlists).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from clirun import Cli, base_env

from cdn_preheat.sandbox.server import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(videos=4, segments=12, task_delay=0.2) as box:
        yield box


@pytest.fixture
def cli(sandbox: Sandbox, tmp_path: Path) -> Cli:
    return Cli(sandbox, tmp_path, {**base_env(tmp_path), **sandbox.client_env("tencent")})
