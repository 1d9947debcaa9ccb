"""Service test helpers: settings for an app over a sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdn_preheat.config import Settings, load_settings
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.service.settings import ServiceSettings

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def sandbox_settings(box: Sandbox, db: Path, provider: str = "tencent", **extra: Any) -> Settings:
    env: dict[str, Any] = {k.lower(): v for k, v in box.client_env(provider).items()}
    return load_settings(**env, cdn_preheat_db=str(db), **extra)


def service_settings(**extra: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "cdn_preheat_api_tokens": TOKEN,
        "cdn_preheat_allowed_networks": "127.0.0.1/32",
    }
    values.update(extra)
    return ServiceSettings(**values)
