"""``cdn-preheat serve``: the HTTP API, metrics and (through routers) the dashboard.

``create_app`` builds the FastAPI app; :mod:`cdn_preheat.service.app` says how
a router is mounted, :mod:`cdn_preheat.service.deps` how routes reach the
engine, :mod:`cdn_preheat.service.auth` how they require a token.
"""

from __future__ import annotations

from cdn_preheat.service.app import create_app
from cdn_preheat.service.engine import ServiceEngine
from cdn_preheat.service.settings import ServiceSettings, load_service_settings

__all__ = ["ServiceEngine", "ServiceSettings", "create_app", "load_service_settings"]
