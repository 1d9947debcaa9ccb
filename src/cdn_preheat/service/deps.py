"""How routers reach the engine and the settings: FastAPI dependencies on ``app.state``.

``create_app`` puts them there once; a route declares what it needs::

    from cdn_preheat.service.deps import EngineDep, SettingsDep

    @router.get("/thing")
    async def thing(engine: EngineDep, settings: SettingsDep) -> dict[str, int]:
        return {"queued": (await engine.queue_depth())}

``app.state.engine`` (:class:`~cdn_preheat.service.engine.ServiceEngine`),
``app.state.settings`` (:class:`~cdn_preheat.config.Settings`),
``app.state.service_settings`` (:class:`~cdn_preheat.service.settings.ServiceSettings`)
and ``app.state.metrics`` (:class:`~cdn_preheat.service.metrics.Metrics`) are
the same objects for the app's lifetime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from cdn_preheat.config import Settings
from cdn_preheat.service.engine import ServiceEngine
from cdn_preheat.service.settings import ServiceSettings

if TYPE_CHECKING:
    from cdn_preheat.service.metrics import Metrics


def get_engine(request: Request) -> ServiceEngine:
    engine: ServiceEngine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_service_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.service_settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


EngineDep = Annotated[ServiceEngine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceSettingsDep = Annotated[ServiceSettings, Depends(get_service_settings)]
