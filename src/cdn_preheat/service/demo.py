"""``cdn-preheat demo --serve``: the sandbox and the service together, on loopback.

A new user gets a running API (and dashboard) over emulated CDNs with nothing
configured: a temporary ledger, a token made for this run, and the sandbox's
origin as the one allowed origin. It prints where to look and curl lines to
try, then serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from cdn_preheat.errors import InputError


def curl_lines(url: str) -> list[str]:
    """What to try against the service at ``url`` (TOKEN and ORIGIN exported)."""
    auth = '-H "Authorization: Bearer $TOKEN"'
    body = '{"video_id": "ep-1", "m3u8_url": "\'"$ORIGIN"\'/vod/demo-1/master.m3u8"}'
    return [
        f"curl -s {auth} -H 'Content-Type: application/json' -d '{body}' {url}/v1/videos",
        f"curl -s {auth} {url}/v1/videos/ep-1",
        f"curl -s {auth} '{url}/v1/videos?limit=10'",
        f"curl -s {auth} {url}/v1/quota",
        f"curl -s {url}/metrics | grep '^cdn_preheat_urls'",
    ]


def serve_demo(
    *,
    provider: str = "tencent",
    videos: int = 3,
    db: Path | None = None,
    port: int = 8000,
) -> int:
    from cdn_preheat.config import load_settings
    from cdn_preheat.providers import emulated_names
    from cdn_preheat.sandbox.server import Sandbox
    from cdn_preheat.service.runner import serve
    from cdn_preheat.service.settings import ServiceSettings

    demo_providers = emulated_names()  # every provider the sandbox emulates, as `demo`
    if provider not in demo_providers:
        raise InputError(f"--provider must be one of {', '.join(demo_providers)}.")
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="cdn-preheat-demo-") as tmp:
        ledger = db or Path(tmp) / "demo.sqlite3"
        with Sandbox(videos=videos, task_delay=0.3, edge_vendor=provider) as box:
            env: dict[str, Any] = {k.lower(): v for k, v in box.client_env(provider).items()}
            settings = load_settings(**env, cdn_preheat_db=str(ledger))
            origin = box.endpoints["origin"]
            service = ServiceSettings(
                cdn_preheat_api_tokens=SecretStr(token),
                cdn_preheat_api_tokens_file=None,
                cdn_preheat_allowed_origins=urlsplit(origin).hostname or "127.0.0.1",
                # The sandbox's origin is on loopback, which the service refuses otherwise.
                cdn_preheat_allowed_networks="127.0.0.1/32",
            )

            def listening(url: str) -> None:
                lines = [
                    "",
                    f"cdn-preheat demo: the service runs over the sandbox ({provider});"
                    " Ctrl-C stops both.",
                    f"  dashboard  {url}/",
                    f"  API docs   {url}/docs",
                    f"  token      {token}   (made for this run; the sandbox only)",
                    f"  origin     {origin}   (videos demo-1..demo-{videos})",
                    "",
                    "Try, in another shell:",
                    f"  export TOKEN={token} ORIGIN={origin}",
                    *(f"  {line}" for line in curl_lines(url)),
                    "",
                ]
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()

            return serve(
                settings, service, host="127.0.0.1", port=port, worker=True, idle=1.0,
                on_listening=listening,
            )  # fmt: skip
