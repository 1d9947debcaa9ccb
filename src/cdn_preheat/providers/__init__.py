"""CDN providers and their registry (rclone's ``fs.Register`` + ``Features()``).

Each provider module declares one :class:`~cdn_preheat.providers.base.ProviderSpec`
named ``SPEC``: its provider class (name, :class:`Features`), its own settings
model, how to build it, its credentials and its sandbox emulator. The registry
below maps a name to that module, one line a vendor, so the names are known
without importing any SDK: a vendor module is imported only when asked for.

Adding a vendor: one provider module with its ``SPEC``, one emulator module in
``cdn_preheat.sandbox`` with its ``EMULATOR``, one line in ``_MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from cdn_preheat.errors import ConfigError

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.providers.base import Provider, ProviderSpec

# The registry: provider name -> the module that declares its SPEC.
_MODULES: dict[str, str] = {
    "tencent": "cdn_preheat.providers.tencent",
    "aliyun": "cdn_preheat.providers.aliyun",
    "qiniu": "cdn_preheat.providers.qiniu",
    "edgeone": "cdn_preheat.providers.edgeone",
    "http": "cdn_preheat.providers.http",
}
_SPECS: dict[str, ProviderSpec] = {}


def register(spec: ProviderSpec, module: str | None = None) -> None:
    """Add a provider to the registry (or replace one of the same name).

    ``module``: the module declaring ``spec`` as ``SPEC``, so it can be looked up
    lazily later; without it the spec itself is kept (plug-ins, tests).
    """
    _MODULES[spec.name] = module or _MODULES.get(spec.name, "")
    _SPECS[spec.name] = spec


def unregister(name: str) -> None:
    """Remove a provider added with :func:`register` (tests)."""
    _MODULES.pop(name, None)
    _SPECS.pop(name, None)


def provider_names() -> tuple[str, ...]:
    """Every registered provider's name, in registration order (imports nothing)."""
    return tuple(_MODULES)


def provider_spec(name: str) -> ProviderSpec:
    """The registration of provider ``name``; ConfigError naming the choices if unknown."""
    spec = _SPECS.get(name)
    if spec is not None:
        return spec
    module = _MODULES.get(name)
    if not module:
        raise ConfigError(f"CDN_PROVIDER={name!r} is not one of {', '.join(provider_names())}.")
    spec = cast("ProviderSpec", importlib.import_module(module).SPEC)
    if spec.name != name:
        raise RuntimeError(f"{module} declares provider {spec.name!r}, registered as {name!r}")
    _SPECS[name] = spec
    return spec


def provider_specs() -> tuple[ProviderSpec, ...]:
    """Every registration (imports every provider module)."""
    return tuple(provider_spec(name) for name in provider_names())


def emulated_names() -> tuple[str, ...]:
    """Providers whose API the sandbox emulates."""
    return tuple(spec.name for spec in provider_specs() if spec.emulator)


def make_provider(settings: Settings) -> Provider:
    """The provider named by ``CDN_PROVIDER``, configured from the settings.

    ``CDN_PREHEAT_RATE`` caps every API's budget (requests a second);
    ``CDN_PREHEAT_QUOTA_UTC_OFFSET_HOURS`` sets its quota day's offset, once.
    """
    from cdn_preheat.clock import resolve_quota_offset

    spec = provider_spec(settings.cdn_provider)
    provider = spec.build(spec.config.from_settings(settings))
    resolve_quota_offset(provider, settings.cdn_preheat_quota_utc_offset_hours)
    if settings.cdn_preheat_rate:
        provider.pacing.set_cap(settings.cdn_preheat_rate)
    return provider


def build_provider(
    name: str,
    credentials: Mapping[str, Any] | None = None,
    *,
    rate: float | None = None,
    **options: Any,
) -> Provider:
    """Provider ``name`` from plain arguments: no environment, no ``.env`` is read.

    ``credentials`` and ``options`` are fields of the vendor's own settings model
    (e.g. Tencent ``secret_id``, ``secret_key``, ``area``, ``endpoint``);
    ``rate`` caps every API's budget like ``CDN_PREHEAT_RATE``.
    """
    from pydantic import BaseModel, ValidationError

    from cdn_preheat.config import describe_validation_error

    spec = provider_spec(name)
    fields = {**(credentials or {}), **options}
    try:
        if issubclass(spec.config, BaseModel):
            config = spec.config.model_validate(fields)
        else:
            config = spec.config(**fields)
    except ValidationError as exc:
        raise ConfigError(f"{name}: {describe_validation_error(exc)}") from None
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    _register_secrets(config)
    provider = spec.build(config)
    if rate:
        provider.pacing.set_cap(rate)
    return provider


def _register_secrets(config: object) -> None:
    """Secrets given as plain arguments are masked in logs like configured ones."""
    from pydantic import SecretStr

    from cdn_preheat import redact

    values = vars(config).values() if hasattr(config, "__dict__") else ()
    redact.register(*(v.get_secret_value() for v in values if isinstance(v, SecretStr)))
