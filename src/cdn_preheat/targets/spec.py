"""The targets file (docs/targets.md): its tables, read and validated, and the targets
it describes with the settings each one's provider is built from.

A target is a provider, its credentials (named by environment variables, never
stored), an area or zone and a CDN host. Every vendor fact (key variables, areas,
which settings take a target's area, endpoint and keys) is its registration's
(``providers.provider_spec``): no vendor table here.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from cdn_preheat import redact
from cdn_preheat.errors import ConfigError, PreheatError
from cdn_preheat.providers.base import ProviderSpec

if TYPE_CHECKING:
    from cdn_preheat.config import Settings


_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


# Each vendor's facts (its usual key variables, its areas, which settings a target's
# area, endpoint and keys go to) are its registration's: providers.provider_spec().
# Keys that would put a secret in the file itself.
_SECRET_KEYS = {
    "secret_id", "secret_key", "access_key", "access_key_id", "access_key_secret",
    "key_id", "key_secret", "password", "token",
}  # fmt: skip


class TargetSpec(BaseModel):
    """One ``[[targets]]`` table of the targets file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    provider: str  # a registered provider's name
    area: str | None = None
    zone: str | None = None  # a zoned provider's (EdgeOne's) zone id, its area
    cdn_host: str | None = None
    key_id_env: str | None = None
    key_secret_env: str | None = None
    endpoint: str | None = None
    pool: str | None = None
    rate: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, ge=1)

    @field_validator("name", "pool")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError(
                "must be lowercase letters, digits, '.', '_' or '-', starting with a "
                "letter or digit"
            )
        return value

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        from cdn_preheat.providers import provider_names

        if value not in provider_names():
            raise ValueError(f"input should be one of {', '.join(provider_names())}")
        return value

    @field_validator("cdn_host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        netloc = urlsplit(value).netloc if "://" in value else value.rstrip("/")
        if not netloc or "/" in netloc:
            raise ValueError("must be a host name such as cdn.example.com")
        return netloc.lower()

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value if "://" in value else f"https://{value}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must look like http://host:port or host:port")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("key_id_env", "key_secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("must be the name of an environment variable, such as MY_SECRET_ID")
        return value

    @property
    def registration(self) -> ProviderSpec:
        from cdn_preheat.providers import provider_spec

        return provider_spec(self.provider)

    @property
    def key_env(self) -> tuple[str, ...] | None:
        """The variables holding this target's key id and secret (None: needs none)."""
        default = self.registration.credentials
        if not default:
            return None
        if len(default) == 1:  # a single token: the secret
            return (self.key_secret_env or default[0],)
        return (self.key_id_env or default[0], self.key_secret_env or default[1], *default[2:])

    @property
    def resolved_area(self) -> str:
        registration = self.registration
        if registration.zoned:
            return self.zone or self.area or ""
        return self.area or registration.default_area


class _TargetsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: list[TargetSpec] = Field(min_length=1)


def load_targets_file(path: str | Path) -> list[TargetSpec]:
    """The targets of the file, validated; ConfigError (one sentence, exit 2) otherwise."""
    where = f"The targets file {path} (CDN_PREHEAT_TARGETS)"
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{where} does not exist; set CDN_PREHEAT_TARGETS to a TOML file."
        ) from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.strerror}).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML ({exc}).") from None
    for index, table in enumerate(data.get("targets", []) if isinstance(data, dict) else []):
        if isinstance(table, dict):
            secret = sorted(_SECRET_KEYS & set(table))
            if secret:
                raise ConfigError(
                    f"{where}: target {_label(table, index)} gives {secret[0]} itself; a "
                    "secret never goes in the file: name the environment variable that holds "
                    "it with key_id_env or key_secret_env."
                )
    try:
        specs = _TargetsFile.model_validate(data).targets
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc, data)}") from None
    _check_together(specs, where)
    return specs


def _label(table: Mapping[str, Any], index: int) -> str:
    name = table.get("name")
    return repr(name) if isinstance(name, str) else f"#{index + 1}"


def _describe(exc: ValidationError, data: Any) -> str:
    """The first problem, naming the target and the field, never a value."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
    if len(loc) >= 2 and loc[0] == "targets" and isinstance(loc[1], int):
        tables = data.get("targets", []) if isinstance(data, dict) else []
        table = tables[loc[1]] if loc[1] < len(tables) else {}
        who = _label(table if isinstance(table, dict) else {}, loc[1])
        if len(loc) == 2:
            return f"target {who} {message.lower()}."
        if error["type"] == "extra_forbidden":
            return f"target {who} has an unknown key {loc[2]}."
        return f"target {who}: {loc[2]} {message.lower()}."
    if loc and loc[0] == "targets":
        return "it needs at least one [[targets]] table." if loc == ["targets"] else message
    if error["type"] == "extra_forbidden":
        return f"unknown key {loc[0]} (only [[targets]] tables belong there)."
    return f"{'.'.join(str(p) for p in loc)} {message.lower()}."


def _check_together(specs: Sequence[TargetSpec], where: str) -> None:
    names = Counter(spec.name for spec in specs)
    twice = [name for name, count in names.items() if count > 1]
    if twice:
        raise ConfigError(f"{where}: the target name {twice[0]!r} is used twice.")
    from cdn_preheat.providers import provider_names

    kinds = provider_names()
    for spec in specs:
        if spec.name in kinds and spec.name != spec.provider:
            raise ConfigError(
                f"{where}: target {spec.name!r} must use provider {spec.name!r}: that name is "
                "the ledger key of the single-provider setup's records."
            )
        registration = spec.registration
        if registration.zoned and not (spec.zone or spec.area):
            raise ConfigError(
                f"{where}: target {spec.name!r} ({spec.provider}) needs its zone id: zone."
            )
        allowed = registration.areas
        if allowed and spec.area is not None and spec.area not in allowed:
            raise ConfigError(
                f"{where}: target {spec.name!r}: area must be one of {', '.join(allowed)} "
                f"for {spec.provider}."
            )
    pools: dict[str, list[TargetSpec]] = {}
    for spec in specs:
        if spec.pool is not None:
            pools.setdefault(spec.pool, []).append(spec)
    for pool, members in pools.items():
        if pool in names or pool in kinds:
            raise ConfigError(
                f"{where}: the pool name {pool!r} is also a target's or a provider's name."
            )
        if len({m.provider for m in members}) > 1:
            raise ConfigError(f"{where}: the members of pool {pool!r} must share one provider.")
        if len({m.cdn_host for m in members}) > 1:
            raise ConfigError(f"{where}: the members of pool {pool!r} must share one cdn_host.")


@dataclass(frozen=True)
class Target:
    """A target ready to build: its spec and the settings its provider is made from."""

    spec: TargetSpec
    settings: Settings

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> tuple[str, str]:
        """The ledger key of the target's URLs, tasks and quota: (name, area)."""
        return (self.spec.name, self.spec.resolved_area)

    @property
    def cdn_host(self) -> str | None:
        return self.spec.cdn_host

    def explain(self, error: PreheatError) -> str:
        """``target NAME: sentence``, naming this target's variables, not the defaults."""
        text = str(error)
        defaults, mine = self.spec.registration.credentials, self.spec.key_env
        if defaults and mine is not None:
            for default, own in zip(defaults, mine, strict=True):
                text = text.replace(default, own)
        return f"target {self.name}: {text}"


def resolve_targets(settings: Settings, environ: Mapping[str, str] | None = None) -> list[Target]:
    """The targets of ``CDN_PREHEAT_TARGETS``, or the one target of the plain settings."""
    if not settings.cdn_preheat_targets:
        from cdn_preheat.providers import provider_spec

        kind = settings.cdn_provider
        registration = provider_spec(kind)
        area = registration.default_area
        if registration.area_setting:
            area = getattr(settings, registration.area_setting) or ""
        spec = TargetSpec(name=kind, provider=kind, area=area, cdn_host=settings.cdn_host)
        return [Target(spec, settings)]
    environ = os.environ if environ is None else environ
    path = settings.cdn_preheat_targets
    specs = load_targets_file(path)
    return [Target(spec, target_settings(settings, spec, environ, path)) for spec in specs]


def target_settings(
    base: Settings, spec: TargetSpec, environ: Mapping[str, str], path: str | Path = "targets"
) -> Settings:
    """``base`` with the target's provider, area, host, endpoint and keys."""
    update: dict[str, Any] = {"cdn_provider": spec.provider, "cdn_host": spec.cdn_host}
    if spec.rate is not None:
        update["cdn_preheat_rate"] = spec.rate
    if spec.batch_size is not None:
        update["cdn_preheat_batch_size"] = spec.batch_size
    registration = spec.registration
    if spec.key_env is not None:
        values = []
        for variable in spec.key_env:
            value = environ.get(variable, "").strip()
            if not value:
                raise ConfigError(
                    f"The targets file {path}: target {spec.name!r} takes its keys from "
                    f"{variable}, which is not set; export it or put it in .env."
                )
            redact.register(value)
            values.append(SecretStr(value))
        update |= dict(zip(registration.credential_settings(), values, strict=True))
    if registration.area_setting:
        update[registration.area_setting] = spec.resolved_area
    if spec.endpoint:
        update |= dict.fromkeys(registration.endpoint_settings, spec.endpoint)
    return base.model_copy(update=update)
