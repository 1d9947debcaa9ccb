"""``cdn-preheat serve``: the HTTP API, metrics and (through routers) the dashboard.

``create_app`` builds the FastAPI app; :mod:`cdn_preheat.service.app` says how
a router is mounted, :mod:`cdn_preheat.service.deps` how routes reach the
engine, :mod:`cdn_preheat.service.auth` how they require a token.

The names below load on first use, so ``serve``'s checks of its settings run
before FastAPI is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdn_preheat.service.app import create_app
    from cdn_preheat.service.engine import ServiceEngine
    from cdn_preheat.service.settings import ServiceSettings, load_service_settings

__all__ = ["ServiceEngine", "ServiceSettings", "create_app", "load_service_settings"]

_HOMES = {
    "create_app": "cdn_preheat.service.app",
    "ServiceEngine": "cdn_preheat.service.engine",
    "ServiceSettings": "cdn_preheat.service.settings",
    "load_service_settings": "cdn_preheat.service.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
