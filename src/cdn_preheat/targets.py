"""Targets: several providers, accounts and areas in one run (docs/targets.md).

A target is a provider, its credentials (named by environment variables, never
stored), an area or zone and a CDN host. ``CDN_PREHEAT_TARGETS`` names a TOML file
listing them; without it the single-provider settings are the one target, under
the ledger key they always had. Targets sharing a ``pool`` are pushed as one unit
that spends the members' combined quota (:class:`PoolProvider`).

This module turns the file into runnable :class:`Unit` s (a target, or a pool),
queues one expansion for every unit with the host mapped per unit, runs the units
side by side (each its own :func:`pipeline.run_queue`), and answers whether the
queue can be warm by a deadline (:func:`feasibility`).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import os
import re
import threading
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from cdn_preheat import notify, redact
from cdn_preheat._sync import run_coroutine
from cdn_preheat.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    InvalidUrls,
    PreheatError,
    ProviderError,
    QuotaExhausted,
)
from cdn_preheat.ledger.base import Ledger, PendingGroup, UrlState
from cdn_preheat.providers.base import (
    Features,
    Limits,
    Provider,
    ProviderSpec,
    Quota,
    SubmitResult,
    TaskEntry,
    TaskState,
)
from cdn_preheat.ratelimit import Budget, Pacing

if TYPE_CHECKING:
    import httpx

    from cdn_preheat.api import PurgeResult
    from cdn_preheat.config import Settings
    from cdn_preheat.hls import ExpandOptions, Expansion
    from cdn_preheat.pipeline import HeadFirst, QueuedVideo, RunOptions, RunReport
    from cdn_preheat.source import VideoSource
    from cdn_preheat.tracker import TrackReport
    from cdn_preheat.verify import GateResult, VerifyReport

log = logging.getLogger(__name__)

POOL_AREA = "pool"  # the area of a pool's ledger key: (pool name, "pool")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")

# Each vendor's facts (its usual key variables, its areas, which settings a target's
# area, endpoint and keys go to) are its registration's: providers.provider_spec().
# Keys that would put a secret in the file itself.
_SECRET_KEYS = {
    "secret_id", "secret_key", "access_key", "access_key_id", "access_key_secret",
    "key_id", "key_secret", "password", "token",
}  # fmt: skip


# The file ---------------------------------------------------------------------
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


# Targets with their settings -------------------------------------------------------
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


# Providers under a target's key ------------------------------------------------------
class KeyedProvider(Provider):
    """A provider recorded under its target's name: the same account, another ledger key."""

    def __init__(self, inner: Provider, name: str) -> None:
        self.inner = inner
        self.name = name
        self.area = inner.area
        self.limits = inner.limits
        self.call_timeout = inner.call_timeout
        # Class-level API names of the vendor, shadowed on the instance.
        vars(self).update(
            submit_api=inner.submit_api,
            status_api=inner.status_api,
            budgets=inner.budgets,
            api_budgets=inner.api_budgets,
            features=inner.features,  # what the vendor can do (purge --delete, window status)
        )

    @property
    def pacing(self) -> Pacing:
        return self.inner.pacing

    def __getattr__(self, attribute: str) -> Any:
        # Vendor extras (doctor's domain lookups, stats) pass through.
        if attribute == "inner":
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)

    def quota(self) -> Quota:
        return self.inner.quota()

    def submit(self, urls: Sequence[str]) -> SubmitResult:
        return self.inner.submit(urls)

    def task_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        return self.inner.task_status(task_ids)

    def window_status(self, since: dt.datetime, until: dt.datetime) -> list[TaskEntry] | None:
        return self.inner.window_status(since, until)

    def find_submitted(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        return self.inner.find_submitted(urls, since)

    def find_request(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        return self.inner.find_request(urls, since)

    def purge_urls(self, urls: Sequence[str]) -> str:
        return self.inner.purge_urls(urls)

    def purge_dirs(self, dirs: Sequence[str], *, delete: bool = False) -> str:
        return self.inner.purge_dirs(dirs, delete=delete)

    def purge_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        return self.inner.purge_status(task_ids)

    def close(self) -> None:
        self.inner.close()


class _PoolPacing(Pacing):
    """The pool's pacing: caps and shares go to every member (each paces its own calls)."""

    def __init__(self, members: Sequence[Pacing]) -> None:
        super().__init__({"*": Budget(1e9, source="a pool: its members pace themselves")})
        self._members = list(members)

    def budget_of(self, api: str) -> str:
        return "*"

    def penalise(self, api: str, seconds: float) -> None:
        # The member that was told to slow down has held its own budget back already.
        return None

    def set_cap(self, cap: float | None) -> None:
        for member in self._members:
            member.set_cap(cap)

    def set_share(self, workers: int) -> None:
        super().set_share(workers)
        for member in self._members:
            member.set_share(workers)


# Features that describe a constraint rather than an ability: the pool has it when any
# member has it (one member's daily quota makes the pool's spending a daily quota).
_ANY_MEMBER = frozenset({"daily_quota"})


def pool_features(members: Sequence[Features]) -> Features:
    """What a pool can do: what every member can (a call goes to any one of them).

    A pool is refused ``purge --delete`` unless every member's vendor deletes, and
    follows tasks with one window call only when every member answers one.
    """
    import dataclasses

    values: dict[str, bool] = {}
    for item in dataclasses.fields(Features):
        flags = [bool(getattr(features, item.name)) for features in members]
        values[item.name] = any(flags) if item.name in _ANY_MEMBER else all(flags)
    return Features(**values)


def _tagged(member: str, task_id: str) -> str:
    return f"{member}/{task_id}"


def _untag(task_id: str) -> tuple[str, str]:
    member, sep, raw = task_id.partition("/")
    return (member, raw) if sep else ("", task_id)


def _pooled_entry(task_id: str, url: str, found: Sequence[TaskEntry], members: int) -> TaskEntry:
    """One URL of a pool's purge from its members' entries (``members`` tasks in all)."""
    import dataclasses

    states = [entry.state for entry in found]
    if len(found) < members or TaskState.PROCESSING in states:
        state, reason = TaskState.PROCESSING, None
    elif all(s is TaskState.DONE for s in states):
        state, reason = TaskState.DONE, None
    else:
        unfinished = next(e for e in found if e.state is not TaskState.DONE)
        state, reason = unfinished.state, unfinished.reason
    return dataclasses.replace(found[0], task_id=task_id, url=url, state=state, reason=reason)


class PoolProvider(Provider):
    """Several accounts serving one CDN host, pushed as one: their quotas add up.

    Each batch goes to the member with the most quota left; a member that answers
    "quota spent" (or refuses its credentials) is set aside and the batch spills
    over to the next. Task ids are recorded as ``MEMBER/TASKID``: they say which
    member pushed each URL, and status queries go to that member only.
    """

    def __init__(self, name: str, members: Sequence[tuple[str, Provider]]) -> None:
        if not members:
            raise ValueError("a pool needs members")
        self.name = name
        self.area = POOL_AREA
        self.members = dict(members)
        providers = list(self.members.values())
        first = providers[0]
        retentions = [p.limits.task_retention for p in providers if p.limits.task_retention]
        self.limits = Limits(
            batch_size=min(p.limits.batch_size for p in providers),
            requests_per_second=sum(p.limits.requests_per_second for p in providers),
            purge_batch_size=min(p.limits.purge_batch_size for p in providers),
            purge_dir_batch_size=min(p.limits.purge_dir_batch_size for p in providers),
            quota_utc_offset_hours=first.limits.quota_utc_offset_hours,
            task_retention=min(retentions) if retentions else None,
        )
        self.call_timeout = max(p.call_timeout for p in providers)
        vars(self).update(
            submit_api=first.submit_api,
            status_api=first.status_api,
            features=pool_features([p.features for p in providers]),
        )
        self._pacing = _PoolPacing([p.pacing for p in providers])
        self._lock = threading.Lock()
        self._left: dict[str, float] = dict.fromkeys(self.members, math.inf)
        self._spent: set[str] = set()  # said "quota spent" today
        self._broken: dict[str, ProviderError] = {}  # refused the credentials
        self.pushed: Counter[str] = Counter()  # URLs accepted per member in this process

    @property
    def pacing(self) -> Pacing:
        return self._pacing

    def left(self) -> dict[str, int | None]:
        """Quota left per member as last seen (None: unknown or unlimited)."""
        with self._lock:
            return {m: None if v == math.inf else int(v) for m, v in self._left.items()}

    @property
    def broken(self) -> dict[str, ProviderError]:
        """Members set aside because the API refused their credentials."""
        with self._lock:
            return dict(self._broken)

    def quota(self) -> Quota:
        """The members' figures added up (a spent member counts 0, an unknown one its total)."""
        totals: list[int | None] = []
        available = 0
        batches = []
        for member, provider in self.members.items():
            if member in self._broken:
                continue
            try:
                quota = provider.quota()
            except AuthError as exc:
                self._set_aside(member, exc)
                continue
            totals.append(quota.total)
            if quota.batch:
                batches.append(quota.batch)
            left = quota.available if quota.available is not None else quota.total
            with self._lock:
                if member in self._spent and left:
                    self._spent.discard(member)  # a new day, or the quota was raised
                self._left[member] = math.inf if left is None else float(left)
                if member in self._spent:
                    self._left[member] = 0.0
                available += 0 if self._left[member] == math.inf else int(self._left[member])
        if not totals:
            raise next(iter(self._broken.values()))
        batch = min(batches) if batches else None
        with self._lock:
            fullest = max(self._left.values(), default=0.0)
        if 0 < fullest < (batch or self.limits.batch_size):
            batch = int(fullest)  # one member's remainder bounds a request
        if any(total is None for total in totals):
            return Quota(self.area, None, None, batch)
        return Quota(self.area, sum(t or 0 for t in totals), available, batch)

    def _set_aside(self, member: str, exc: ProviderError) -> None:
        log.warning("pool %s: member %s set aside: %s", self.name, member, exc)
        with self._lock:
            self._broken[member] = exc
            self._left[member] = 0.0

    def _pick(self, tried: set[str], n: int) -> str | None:
        """The member with the most quota left (file order breaks ties), ``n`` taken from it.

        Raises BatchTooLarge when members have quota left but none has ``n``: a
        vendor refuses a whole request that exceeds the day's remainder
        (Tencent ``LimitExceeded.CdnPushExceedDayLimit``), so the scheduler
        halves the batch until it fits the fullest member.
        """
        with self._lock:
            free = [
                m
                for m in self.members
                if m not in tried and m not in self._spent and m not in self._broken
            ]
            if not free:
                return None
            member = max(free, key=lambda m: self._left[m])
            if 0 < self._left[member] < n:
                raise BatchTooLarge(
                    f"no member of pool {self.name} has {n} URLs of quota left today "
                    f"(at most {int(self._left[member])}); pushing smaller batches."
                )
            self._left[member] -= n
            return member

    def _give_back(self, member: str, n: int) -> None:
        with self._lock:
            if member not in self._spent and member not in self._broken:
                self._left[member] += n

    def submit(self, urls: Sequence[str]) -> SubmitResult:
        tried: set[str] = set()
        last: ProviderError | None = None
        while True:
            member = self._pick(tried, len(urls))
            if member is None:
                if last is None or isinstance(last, QuotaExhausted):
                    raise QuotaExhausted(
                        f"every member of pool {self.name} has spent its prefetch quota today.",
                        code=getattr(last, "code", None),
                    )
                raise last
            tried.add(member)
            try:
                result = self.members[member].submit(urls)
            except QuotaExhausted as exc:
                log.info("pool %s: %s spent its quota; spilling over", self.name, member)
                with self._lock:
                    self._spent.add(member)
                    self._left[member] = 0.0
                last = exc
                continue
            except AuthError as exc:
                self._set_aside(member, exc)
                last = exc
                continue
            except InvalidUrls as exc:
                self._give_back(member, len(exc.invalid))
                if exc.task_id is None:
                    raise
                accepted = len(urls) - len(exc.invalid)
                with self._lock:
                    self.pushed[member] += accepted
                raise InvalidUrls(
                    str(exc),
                    invalid=exc.invalid,
                    task_id=_tagged(member, exc.task_id),
                    code=exc.code,
                ) from exc
            except BaseException:
                self._give_back(member, len(urls))
                raise
            with self._lock:
                self.pushed[member] += len(result.accepted)
            return SubmitResult(
                _tagged(member, result.task_id), result.accepted, dict(result.invalid)
            )

    def _by_member(self, task_ids: Sequence[str]) -> Iterator[tuple[str, list[str]]]:
        groups: dict[str, list[str]] = {}
        for task_id in task_ids:
            member, raw = _untag(task_id)
            if member in self.members:
                groups.setdefault(member, []).append(raw)
        yield from groups.items()

    @staticmethod
    def _retag(member: str, entries: Sequence[TaskEntry]) -> list[TaskEntry]:
        import dataclasses

        return [dataclasses.replace(e, task_id=_tagged(member, e.task_id)) for e in entries]

    def task_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        entries: list[TaskEntry] = []
        for member, raw in self._by_member(task_ids):
            entries += self._retag(member, self.members[member].task_status(raw))
        return entries

    def window_status(self, since: dt.datetime, until: dt.datetime) -> list[TaskEntry] | None:
        entries: list[TaskEntry] = []
        for member, provider in self.members.items():
            if member in self.broken:
                continue
            found = provider.window_status(since, until)
            if found is None:
                return None
            entries += self._retag(member, found)
        return entries

    def find_submitted(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        found: dict[str, str] = {}
        for member, provider in self.members.items():
            if member in self.broken:
                continue
            for url, task_id in provider.find_submitted(urls, since).items():
                found.setdefault(url, _tagged(member, task_id))
        return found

    def find_request(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        # submit() hands a request to one member (a member that refused it for its
        # quota or its keys did not take it): each member took all of it or none.
        found: dict[str, str] = {}
        for member, provider in self.members.items():
            if member in self.broken:
                continue
            for url, task_id in provider.find_request(urls, since).items():
                found.setdefault(url, _tagged(member, task_id))
        return found

    def purge_urls(self, urls: Sequence[str]) -> str:
        return "|".join(_tagged(m, p.purge_urls(urls)) for m, p in self.members.items())

    def purge_dirs(self, dirs: Sequence[str], *, delete: bool = False) -> str:
        return "|".join(
            _tagged(m, p.purge_dirs(dirs, delete=delete)) for m, p in self.members.items()
        )

    def purge_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        """Each pool task as one: one entry per URL under the id the purge returned.

        A pool's purge is one task per member (``MEMBER/ID|MEMBER/ID``); a URL is
        done once every member's task says done, failed (the first member's
        reason) once every member has settled and one did not finish it, and
        processing while any member is. A task with a member whose list has no
        entry yet has none either (the follower waits for it, as for one account).
        """
        parts = {task_id: task_id.split("|") for task_id in task_ids}
        by_part: dict[str, list[TaskEntry]] = {}
        for member, raw in self._by_member([p for ps in parts.values() for p in ps]):
            for entry in self._retag(member, self.members[member].purge_status(raw)):
                by_part.setdefault(entry.task_id, []).append(entry)
        entries: list[TaskEntry] = []
        for task_id, own in parts.items():
            if any(not by_part.get(part) for part in own):
                continue
            per_url: dict[str, list[TaskEntry]] = {}
            for part in own:
                for entry in by_part[part]:
                    per_url.setdefault(entry.url, []).append(entry)
            for url, found in per_url.items():
                entries.append(_pooled_entry(task_id, url, found, len(own)))
        return entries

    def close(self) -> None:
        for provider in self.members.values():
            provider.close()


# Units: what runs side by side ---------------------------------------------------------
@dataclass
class Unit:
    """A target, or a pool of targets, with its provider under its ledger key."""

    name: str
    provider: Provider
    members: list[Target]
    settings: Settings  # the first member's: rate, batch size, CDN host
    error: PreheatError | None = None  # set when the unit cannot run (its sentence)
    quota: Quota | None = None  # the live quota read before queueing

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider.name, self.provider.area)

    @property
    def cdn_host(self) -> str | None:
        return self.members[0].cdn_host

    @property
    def is_pool(self) -> bool:
        return isinstance(self.provider, PoolProvider)

    def explain(self, error: PreheatError) -> str:
        if self.is_pool:
            return f"pool {self.name}: {error}"
        return self.members[0].explain(error)


ProviderFactory = Callable[["Settings"], Provider]


def _default_factory(settings: Settings) -> Provider:
    from cdn_preheat.providers import make_provider

    return make_provider(settings)


def build_units(
    targets: Sequence[Target], *, make_provider: ProviderFactory | None = None
) -> list[Unit]:
    """One unit per target outside a pool and one per pool, in the file's order.

    A provider that cannot be built (a ConfigError) fails the whole run: the file
    is wrong. Refused credentials only show when the API is asked (:func:`check_units`).
    """
    factory = make_provider or _default_factory
    groups: dict[str, list[Target]] = {}  # a unit's name -> its targets, in file order
    for target in targets:
        groups.setdefault(target.spec.pool or target.name, []).append(target)
    built: list[Provider] = []
    units: list[Unit] = []
    try:
        for name, members in groups.items():
            providers = []
            for target in members:
                provider = factory(target.settings)
                built.append(provider)
                providers.append(provider)
            if members[0].spec.pool is not None:
                unit_provider: Provider = PoolProvider(
                    name, [(t.name, p) for t, p in zip(members, providers, strict=True)]
                )
            elif providers[0].name == name:
                unit_provider = providers[0]  # the single-provider key, as before targets
            else:
                unit_provider = KeyedProvider(providers[0], name)
            units.append(Unit(name, unit_provider, members, members[0].settings))
    except BaseException:
        for provider in built:
            _close_provider(provider)
        raise
    return units


def _close_provider(provider: Provider) -> None:
    try:
        provider.close()
    except Exception:  # closing is best effort
        log.debug("closing a provider failed", exc_info=True)


def close_units(units: Sequence[Unit]) -> None:
    for unit in units:
        _close_provider(unit.provider)


def check_units(units: Sequence[Unit], live_quota: Callable[[Provider], Quota]) -> None:
    """Read every unit's quota side by side; a unit whose API refuses is marked failed.

    Wrong credentials (or any provider error) fail that unit only, with its sentence.
    """

    def check(unit: Unit) -> None:
        try:
            unit.quota = live_quota(unit.provider)
        except ProviderError as exc:
            unit.error = exc
        else:
            unit.error = None  # checked again (a long-lived service): it answers now

    _side_by_side([(unit.name, functools.partial(check, unit)) for unit in units])


def _side_by_side(jobs: Sequence[tuple[str, Callable[[], None]]]) -> None:
    """Run each job in its own thread and wait for all (one job: in this thread)."""
    if len(jobs) == 1:
        jobs[0][1]()
        return
    errors: list[BaseException] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=guarded, args=(job,), name=f"target-{name}", daemon=True)
        for name, job in jobs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# Queueing one expansion for every unit ---------------------------------------------------
def map_host(url: str, from_host: str, to_host: str) -> str:
    """``url`` with its host ``from_host`` replaced by ``to_host`` (path, query kept)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if netloc.lower() != from_host:
        return url
    return f"{scheme}://{to_host}{slash}{tail}"


def expansion_for(expansion: Expansion, from_host: str | None, to_host: str | None) -> Expansion:
    """The expansion as seen by a unit whose CDN host is ``to_host``.

    ``from_host`` is the host the expansion was mapped to (None: the origin's).
    """
    import dataclasses

    source_host = urlsplit(expansion.source).netloc.lower()
    old = (from_host or source_host).lower()
    new = (to_host or source_host).lower()
    if old == new:
        return expansion
    urls = [dataclasses.replace(u, url=map_host(u.url, old, new)) for u in expansion.urls]
    skipped = [dataclasses.replace(s, url=map_host(s.url, old, new)) for s in expansion.skipped]
    return dataclasses.replace(expansion, urls=urls, skipped=skipped)


def expand_host(units: Sequence[Unit]) -> str | None:
    """The host an expansion is mapped to once, for every unit: the first unit's."""
    return units[0].cdn_host if units else None


def queue_for_units(
    ledger: Ledger,
    units: Sequence[Unit],
    video_id: str,
    expansion: Expansion,
    *,
    head_first: HeadFirst | None,
    max_age: dt.timedelta,
    now: dt.datetime | None = None,
) -> dict[str, QueuedVideo]:
    """Queue the expansion under every unit's key, the host mapped per unit."""
    from cdn_preheat.pipeline import queue_expansion

    base = expand_host(units)
    queued: dict[str, QueuedVideo] = {}
    for unit in units:
        name, area = unit.key
        queued[unit.name] = queue_expansion(
            ledger, name, area, video_id, expansion_for(expansion, base, unit.cdn_host),
            head_first=head_first, max_age=max_age, now=now,
        )  # fmt: skip
    return queued


def combined(video_id: str, per_unit: Mapping[str, QueuedVideo]) -> QueuedVideo:
    """One video's summary over every unit: found once, queued and done summed."""
    import dataclasses

    first = next(iter(per_unit.values()))
    return dataclasses.replace(
        first,
        queued=sum(q.queued for q in per_unit.values()),
        already_done=sum(q.already_done for q in per_unit.values()),
        already_queued=sum(q.already_queued for q in per_unit.values()),
    )


def preheated_everywhere(
    ledger: Ledger, units: Sequence[Unit], video_id: str, now: dt.datetime, max_age: dt.timedelta
) -> bool:
    """The video is preheated and every unit holds its URLs with none waiting there."""
    from cdn_preheat.ledger.base import VideoState
    from cdn_preheat.pipeline import is_preheated

    video = ledger.get_video(video_id)
    if not is_preheated(video, now, max_age):
        return False
    if len(units) == 1 or (video is not None and video.state is VideoState.LEGACY):
        return True  # as before targets; the old script's record counts as preheated
    by_key = ledger.counts_by_target(video_id)
    for unit in units:
        counts = by_key.get(unit.key)
        if not counts:
            return False
        if counts.get(UrlState.PENDING, 0) or counts.get(UrlState.RESERVED, 0):
            return False
    return True


def queue_videos_for_units(
    ledger: Ledger,
    units: Sequence[Unit],
    sources: Sequence[VideoSource],
    expand_options: ExpandOptions,
    *,
    head_first: HeadFirst | None,
    max_age: dt.timedelta,
    reset: bool = False,
    on_video: Callable[[QueuedVideo], None] | None = None,
    stop: threading.Event | None = None,
) -> list[QueuedVideo]:
    """Expand many videos concurrently, once each, and queue each for every unit.

    Once ``stop`` (default: the run's, :func:`stopping.current`) is set the
    expansion ends at once; the videos not queued by then are ``interrupted``.
    """
    import dataclasses

    from cdn_preheat import stopping
    from cdn_preheat.clock import utcnow
    from cdn_preheat.hls import expand_many
    from cdn_preheat.pipeline import QueuedVideo

    now = utcnow()
    results: list[QueuedVideo] = []
    todo: list[VideoSource] = []
    for source in sources:
        if reset:
            ledger.reset_video(source.video_id)
        if preheated_everywhere(ledger, units, source.video_id, now, max_age):
            done = QueuedVideo(source.video_id, source.m3u8_url, already_preheated=True)
            results.append(done)
            if on_video:
                on_video(done)
        else:
            todo.append(source)
    options = dataclasses.replace(expand_options, cdn_host=expand_host(units))
    if stop is not None:
        options = dataclasses.replace(options, stop=stop)

    async def expand_all() -> None:
        items = ((source, source.m3u8_url) for source in todo)
        try:
            async for source, outcome in stopping.each_until_stopped(
                expand_many(items, options), stop
            ):
                queue_one(source, outcome)
        except stopping.Stopped:
            seen = {video.video_id for video in results}
            results.extend(
                QueuedVideo(source.video_id, source.m3u8_url, interrupted=True)
                for source in todo
                if source.video_id not in seen
            )

    def queue_one(source: VideoSource, outcome: Expansion | PreheatError) -> None:
        if isinstance(outcome, PreheatError):
            video = QueuedVideo(source.video_id, source.m3u8_url, error=str(outcome))
        else:
            per_unit = queue_for_units(
                ledger, units, source.video_id, outcome,
                head_first=head_first, max_age=max_age,
            )  # fmt: skip
            video = combined(source.video_id, per_unit)
        results.append(video)
        if on_video:
            on_video(video)

    run_coroutine(expand_all())  # the sync boundary: works inside a running loop too
    order = {source.video_id: index for index, source in enumerate(sources)}
    results.sort(key=lambda video: order.get(video.video_id, 0))
    return results


# Running the units side by side --------------------------------------------------------------
class ScopedLedger:
    """The shared ledger as one unit's run sees it: counts are that unit's only.

    ``run_queue`` reports the pending URLs of its own target, read from that
    target's rows only (the other targets' rows of a shared ledger are not read).
    """

    def __init__(self, ledger: Ledger, key: tuple[str, str]) -> None:
        self._ledger = ledger
        self._key = key

    def counts(
        self, video_id: str | None = None, *, target: tuple[str, str] | None = None
    ) -> dict[UrlState, int]:
        if target not in (None, self._key):
            raise ValueError(f"a ledger scoped to {self._key} counts no other target's URLs")
        return self._ledger.counts(video_id, target=self._key)

    @property
    def unscoped(self) -> Ledger:
        """The shared ledger: a video's state is over every unit, not this one's share."""
        return self._ledger

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._ledger, attribute)


def scoped(ledger: Ledger, key: tuple[str, str]) -> Ledger:
    return cast("Ledger", ScopedLedger(ledger, key))


@dataclass
class UnitResult:
    """What one unit's run did (``report``), or the sentence it failed with."""

    name: str
    key: tuple[str, str]
    report: RunReport | None = None
    error: str | None = None
    exit_code: int = 0
    pushed_by: dict[str, int] = field(default_factory=dict)  # pool: URLs per member
    # pool: members set aside because their API refused the keys, with the sentence
    set_aside: dict[str, str] = field(default_factory=dict)


def run_units(
    ledger: Ledger,
    units: Sequence[Unit],
    options_for: Callable[[Unit], RunOptions],
    *,
    stop: threading.Event | None = None,
    video_id: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_tracking: Callable[[str, int, TrackReport], None] | None = None,
) -> list[UnitResult]:
    """Push every unit's queue side by side; one unit's failure never stops another.

    Units that failed their check (:func:`check_units`) are reported, not run.
    """
    from cdn_preheat.pipeline import run_queue

    stop = stop or threading.Event()
    results = [UnitResult(unit.name, unit.key) for unit in units]
    progress_lock = threading.Lock()

    def progressed(n: int) -> None:
        if on_progress is not None:
            with progress_lock:
                on_progress(n)

    def run(unit: Unit, result: UnitResult) -> None:
        if unit.error is not None:
            _fail(unit, result, unit.error)
            return
        tracking = None
        if on_tracking is not None:
            track = on_tracking

            def tracking(open_tasks: int, totals: TrackReport) -> None:
                with progress_lock:
                    track(unit.name, open_tasks, totals)

        try:
            report = run_queue(
                scoped(ledger, unit.key), unit.provider, options_for(unit),
                on_progress=progressed, on_tracking=tracking, stop=stop, video_id=video_id,
            )  # fmt: skip
        except PreheatError as exc:
            _fail(unit, result, exc)
            return
        result.report = report
        if report.stopped_by is not None:
            _fail(unit, result, report.stopped_by)
        elif report.quota_exhausted and report.pending:
            result.exit_code = QuotaExhausted.exit_code
        if isinstance(unit.provider, PoolProvider):
            result.pushed_by = dict(unit.provider.pushed)
            _note_set_aside(unit, unit.provider, result)

    _side_by_side(
        [(u.name, functools.partial(run, u, r)) for u, r in zip(units, results, strict=True)]
    )
    return results


def _note_set_aside(unit: Unit, pool: PoolProvider, result: UnitResult) -> None:
    """Members whose keys were refused: their sentences, and the run's exit code 2."""
    members = {target.name: target for target in unit.members}
    for name, error in pool.broken.items():
        result.set_aside[name] = members[name].explain(error)
        log.warning("pool %s: %s", unit.name, result.set_aside[name])
    if result.set_aside and not result.exit_code:
        result.exit_code = AuthError.exit_code


def _fail(unit: Unit, result: UnitResult, error: PreheatError) -> None:
    result.error = unit.explain(error)
    result.exit_code = error.exit_code
    log.warning("%s", result.error)


def unit_run_options(
    settings: Settings, *, wait: bool, wait_timeout: float
) -> Callable[[Unit], RunOptions]:
    """Run options per unit: its own rate, batch size and CDN host."""
    from cdn_preheat.app import run_options

    def options(unit: Unit) -> RunOptions:
        return run_options(unit.settings, wait=wait, wait_timeout=wait_timeout)

    return options


def worst_exit(results: Sequence[UnitResult]) -> int:
    """The run's exit code: a configuration error (2) before quota (3) before others (1)."""
    codes = {r.exit_code for r in results if r.exit_code}
    for code in (2, 3, 1):
        if code in codes:
            return code
    return max(codes, default=0)


# Per-target status ------------------------------------------------------------------
@dataclass(frozen=True)
class TargetCounts:
    name: str
    key: tuple[str, str]
    counts: dict[UrlState, int]
    members: tuple[str, ...] = ()  # a pool's member targets
    pushed_by: dict[str, int] = field(default_factory=dict)


def status_by_unit(
    ledger: Ledger, units: Sequence[Unit], video_id: str | None = None
) -> list[TargetCounts]:
    """URL counts per unit; a pool's rows also count URLs per member (from task ids)."""
    by_key = ledger.counts_by_target(video_id)
    rows = []
    for unit in units:
        pushed: Counter[str] = Counter()
        if unit.is_pool:
            videos = [video_id] if video_id else [v.video_id for v in ledger.list_videos()]
            seen: set[str] = set()
            for vid in videos:
                for record in ledger.url_records(vid):
                    if (record.provider, record.area) != unit.key or record.url in seen:
                        continue
                    seen.add(record.url)
                    if record.task_id and record.state is not UrlState.PENDING:
                        pushed[_untag(record.task_id)[0]] += 1
        rows.append(
            TargetCounts(
                unit.name,
                unit.key,
                dict(by_key.get(unit.key, {})),
                tuple(m.name for m in unit.members) if unit.is_pool else (),
                dict(pushed),
            )
        )
    return rows


def target_entries(ledger: Ledger, units: Sequence[Unit], video_id: str) -> list[dict[str, Any]]:
    """The video on each unit as ``GET /v1/videos/{id}`` lists it (webhook events too).

    Counts by state, state, progress and a pool's URLs pushed per member; the
    service adds the ``error`` its worker met.
    """
    rows = []
    for unit, row in zip(units, status_by_unit(ledger, units, video_id), strict=True):
        counts = notify.record_counts(row.counts)
        entry: dict[str, Any] = {
            "name": row.name,
            "provider": unit.members[0].spec.provider,
            "area": row.key[1],
            "state": notify.target_state(counts),
            "counts": counts,
            "progress": notify.progress(counts),
        }
        if row.members:
            entry["members"] = [
                {"name": member, "pushed": row.pushed_by.get(member, 0)} for member in row.members
            ]
        rows.append(entry)
    return rows


def describe_targets(ledger: Ledger, units: Sequence[Unit]) -> notify.DescribeTargets:
    """The units' description for the webhook events of a run (:mod:`cdn_preheat.notify`)."""
    return functools.partial(target_entries, ledger, list(units))


# Feasibility before a deadline ----------------------------------------------------------
@dataclass(frozen=True)
class ColdVideo:
    video_id: str
    pending: int
    reached: int  # of the pending URLs, how many the target can push in time


@dataclass(frozen=True)
class Feasibility:
    """Whether one unit can push its whole queue before the deadline."""

    name: str
    queued: int
    quota_left: int | None  # today's, None: no daily quota
    quota_by_deadline: int | None  # with the new days' quotas that start before the deadline
    urls_per_second: float
    rate_by_deadline: int
    capacity: int
    cold: list[ColdVideo]
    error: str | None = None

    @property
    def feasible(self) -> bool:
        return self.error is None and not self.cold


def urls_per_second(provider: Provider, batch_size: int) -> float:
    """The unit's push ceiling in URLs a second: its submit budget times its batch."""
    if isinstance(provider, PoolProvider):
        return sum(urls_per_second(m, min(batch_size, m.limits.batch_size))
                   for m in provider.members.values())  # fmt: skip
    pacing = provider.pacing
    api = provider.submit_api
    try:
        rate = pacing.rate(api)
        budget = provider.budgets.get(pacing.budget_of(api))
    except KeyError:
        return provider.limits.requests_per_second * batch_size
    if budget is not None and budget.units_per_call > 1:
        return rate  # a budget counted in URLs (Qiniu)
    return rate * batch_size


def feasibility(
    ledger: Ledger,
    units: Sequence[Unit],
    deadline: dt.datetime,
    now: dt.datetime,
    options_for: Callable[[Unit], RunOptions],
    groups_for: Callable[[Unit], list[PendingGroup]] | None = None,
) -> list[Feasibility]:
    """For each unit: can its quota and rate push its queue by ``deadline``, and if not,
    which videos (in claim order: head-first tiers, then queue order) stay cold.

    ``groups_for``: the unit's queue (default: what the ledger holds pending).
    """
    from cdn_preheat.clock import seconds_until_next_day

    seconds = max(0.0, (deadline - now).total_seconds())
    rows = []
    for unit in units:
        groups = groups_for(unit) if groups_for else ledger.pending_groups(*unit.key)
        queued = sum(g.count for g in groups)
        if unit.error is not None:
            rows.append(Feasibility(unit.name, queued, None, None, 0.0, 0, 0, [],
                                    unit.explain(unit.error)))  # fmt: skip
            continue
        options = options_for(unit)
        quota = unit.quota
        batch = min(
            unit.provider.limits.batch_size,
            options.scheduler.batch_size or unit.provider.limits.batch_size,
            (quota.batch if quota and quota.batch else unit.provider.limits.batch_size),
        )
        ceiling = urls_per_second(unit.provider, batch)
        by_rate = int(ceiling * seconds)
        left: int | None = None
        by_quota: int | None = None
        if quota is not None and quota.total is not None:
            book = None
            offset = options.scheduler.quota_utc_offset_hours
            if offset is None:
                offset = unit.provider.limits.quota_utc_offset_hours
            from cdn_preheat.clock import quota_day

            book = ledger.quota_day(*unit.key, quota_day(now, offset))
            left = quota.available if quota.available is not None else quota.total
            if book is not None and book.remaining is not None:
                left = min(left, book.remaining)
            by_quota = left
            to_reset = seconds_until_next_day(now, offset)
            if seconds > to_reset:
                new_days = 1 + int((seconds - to_reset) // 86400)
                by_quota += new_days * quota.total
        capacity = by_rate if by_quota is None else min(by_rate, by_quota)
        rows.append(
            Feasibility(
                unit.name,
                queued,
                left,
                by_quota,
                ceiling,
                by_rate,
                capacity,
                _cold(groups, capacity),
            )
        )
    return rows


def planned_groups(
    ledger: Ledger,
    unit: Unit,
    expansions: Mapping[str, Expansion],
    base_host: str | None,
    head_first: HeadFirst | None,
    now: dt.datetime,
    max_age: dt.timedelta,
) -> list[PendingGroup]:
    """The unit's queue as it would stand once these expansions were queued (a dry run).

    What the ledger holds pending comes first (it was queued earlier); then each
    video's URLs the unit has neither queued nor done, by priority. Nothing is written.
    """
    from cdn_preheat.pipeline import iter_prioritized

    groups = list(ledger.pending_groups(*unit.key))
    seen: set[str] = set()
    for video_id, expansion in expansions.items():
        mine = expansion_for(expansion, base_host, unit.cdn_host)
        held = {
            record.url
            for record in ledger.url_records(video_id)
            if (record.provider, record.area) == unit.key
            and (
                record.state in (UrlState.PENDING, UrlState.RESERVED, UrlState.SUBMITTED)
                or (
                    record.state is UrlState.DONE
                    and (record.expires_at is None or record.expires_at > now)
                    and (record.pushed_at is None or now - record.pushed_at < max_age)
                )
            )
        }
        counts: Counter[int] = Counter()
        for item in iter_prioritized(mine, head_first):
            if item.url not in held and item.url not in seen:
                seen.add(item.url)
                counts[item.priority] += 1
        groups += [PendingGroup(video_id, p, n) for p, n in sorted(counts.items())]
    return sorted(groups, key=lambda group: group.priority)  # stable: queue order kept


def _cold(groups: Sequence[Any], capacity: int) -> list[ColdVideo]:
    pending: dict[str, int] = {}
    reached: dict[str, int] = {}
    budget = capacity
    for group in groups:
        pending[group.video_id] = pending.get(group.video_id, 0) + group.count
        take = min(budget, group.count)
        reached[group.video_id] = reached.get(group.video_id, 0) + take
        budget -= take
    return [
        ColdVideo(video_id, count, reached[video_id])
        for video_id, count in pending.items()
        if reached[video_id] < count
    ]


def parse_deadline(text: str, now: dt.datetime) -> dt.datetime:
    """``--by``: an ISO-8601 time (with its offset; UTC if none) or a span like 90m, 3h, 1d."""
    from cdn_preheat.errors import InputError

    text = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text.lower())
    if match:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return now + dt.timedelta(seconds=float(match.group(1)) * unit)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"--by takes a time like 2026-12-02T20:00+08:00 or a span like 3h, not {text!r}."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if moment <= now:
        raise InputError(f"--by {text} is already past.")
    return moment


# The whole run ------------------------------------------------------------------
@dataclass
class TargetsRun:
    """A push over every unit: the videos queued, each unit's outcome, the deadline table."""

    videos: list[QueuedVideo]
    results: list[UnitResult]
    feasibility: list[Feasibility] | None = None
    # ``preheat(verify=True)``: each video's verification on every target (None: not asked)
    verified: list[TargetsVerify] | None = None

    @property
    def exit_code(self) -> int:
        return worst_exit(self.results)

    def hit_ratios(self) -> dict[str, float | None] | None:
        """Per target, the cached share of the probes over every verified video.

        None when the run was not verified; a target's None: nothing of it probed.
        """
        if self.verified is None:
            return None
        cached: dict[str, int] = dict.fromkeys((r.name for r in self.results), 0)
        total: dict[str, int] = dict.fromkeys((r.name for r in self.results), 0)
        for checked in self.verified:
            for target in checked.results:
                cached[target.name] += target.report.overall.cached
                total[target.name] += target.report.overall.total
        return {name: (cached[name] / total[name] if total[name] else None) for name in total}


@dataclass(frozen=True)
class TargetSummary:
    """One target's line after a push (or a queueing): what it did, what its queue holds.

    The counts are the ledger's for the target's key when asked; ``pushed``,
    ``requests`` and the like are this run's (0 when nothing ran);
    ``quota_left`` is the run's last figure, else the quota its check read.
    """

    name: str
    provider: str
    area: str
    members: tuple[str, ...]  # a pool's member targets
    pushed: int
    done: int
    failed: int  # failed or invalid
    pending: int  # pending or reserved
    in_flight: int
    quota_left: int | None
    requests: int
    wasted_requests: int
    quota_exhausted: bool
    pushed_by: dict[str, int] = field(default_factory=dict)
    set_aside: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    hit_ratio: float | None = None  # with a verified run (``TargetsRun.hit_ratios``)


def live_quota(provider: Provider) -> Quota:
    """The provider's quota, riding out a flaky API (wrong credentials raise at once)."""
    from cdn_preheat.ratelimit import call_with_retries

    return call_with_retries(provider.quota, attempts=8)


def preheat(
    ledger: Ledger,
    units: Sequence[Unit],
    sources: Sequence[VideoSource],
    settings: Settings,
    *,
    head_first: HeadFirst | None,
    wait: bool = True,
    wait_timeout: float = 600.0,
    reset: bool = False,
    purge: bool = False,
    only_these: bool = False,
    by: dt.datetime | None = None,
    dry_run: bool = False,
    strict: bool = False,
    stop: threading.Event | None = None,
    on_video: Callable[[QueuedVideo], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    options_for: Callable[[Unit], RunOptions] | None = None,
) -> TargetsRun:
    """Check every unit, expand each video once, queue it for every unit, push side by side.

    ``only_these``: with one source, push only that video's URLs (``push VIDEO``).
    ``by``: first work out, per unit, whether its queue can be warm by then
    (:func:`feasibility`); with ``dry_run`` stop there, having pushed nothing.
    A unit whose check fails (wrong keys) is queued for all the same (a later run
    with the keys fixed pushes it) and reported failed; when every unit fails, the
    first unit's error is raised, as a single-provider run does.

    ``purge`` (with ``reset``): first purge what the ledger holds for each video on
    every target (:func:`purge_before_republish`); unless every target purged all
    of it, nothing is erased or pushed.
    """
    from cdn_preheat.app import expand_options
    from cdn_preheat.clock import utcnow
    from cdn_preheat.errors import InputError

    if purge and not reset:
        raise InputError("--purge goes with --reset: it purges the old URLs before pushing anew.")
    options_for = options_for or unit_run_options(settings, wait=wait, wait_timeout=wait_timeout)
    check_units(units, live_quota)
    failed = [unit for unit in units if unit.error is not None]
    if failed and len(failed) == len(units):
        first = failed[0].error
        assert first is not None
        if not settings.cdn_preheat_targets or not _rebuildable(first):
            raise first  # the single-provider setup: its sentence as before targets
        code = first.code if isinstance(first, ProviderError) else None
        raise type(first)(failed[0].explain(first), code=code)
    if purge and not dry_run:
        ids = [source.video_id for source in sources]
        purge_before_republish(ledger, units, ids, wait_timeout=wait_timeout, stop=stop)
    if dry_run:
        videos, table = _plan(ledger, units, sources, settings, head_first, by, strict,
                              options_for)  # fmt: skip
        return TargetsRun(videos, [UnitResult(u.name, u.key) for u in units], table)
    videos = queue_videos_for_units(
        ledger, units, sources, expand_options(settings, strict=strict),
        head_first=head_first, max_age=settings.cdn_preheat_max_age, reset=reset,
        on_video=on_video, stop=stop,
    )  # fmt: skip
    table = None
    if by is not None:
        table = feasibility(ledger, units, by, utcnow(), options_for)
    video_id = sources[0].video_id if only_these and len(sources) == 1 else None
    results = run_units(
        ledger, units, options_for, stop=stop, video_id=video_id, on_progress=on_progress
    )
    from cdn_preheat.pipeline import refresh_states

    refresh_states(
        ledger, [v.video_id for v in videos if v.error is None],
        targets=describe_targets(ledger, units),
    )  # fmt: skip
    return TargetsRun(videos, results, table)


def purge_before_republish(
    ledger: Ledger,
    units: Sequence[Unit],
    video_ids: Sequence[str],
    *,
    wait_timeout: float = 600.0,
    stop: threading.Event | None = None,
) -> list[TargetsPurge]:
    """``push --reset --purge``: purge each video's old URLs on every target, or refuse.

    All or nothing: a republish must not leave one target serving stale copies
    under a fresh record. So a target whose check failed (:func:`check_units`)
    stops the run before anything is purged, and a target whose purge does not
    finish (refused, quota spent, failed) stops it before anything is erased or
    pushed; the error names the target and carries the worst exit code. Videos
    the ledger does not hold have nothing to purge.
    """
    broken = [unit for unit in units if unit.error is not None]
    if broken:
        sentences = "; ".join(u.explain(u.error) for u in broken if u.error is not None)
        raise _republish_error(
            worst_code(u.error.exit_code for u in broken if u.error is not None),
            f"push --purge needs every target to purge first: {sentences} Nothing was "
            "purged, erased or pushed.",
        )
    runs = []
    for video_id in video_ids:
        if ledger.get_video(video_id) is None:
            continue
        run = purge_targets(ledger, units, video_id=video_id, wait_timeout=wait_timeout,
                            stop=stop, check=False)  # fmt: skip
        failed = [t for t in run.results if t.exit_code or _unfinished(t.result)]
        if failed:
            sentences = "; ".join(
                t.error
                or f"target {t.name}: {_unfinished(t.result)} of its purges did not "
                "finish (the wait timed out or the run was stopped)"
                for t in failed
            )
            raise _republish_error(
                run.exit_code or 1,
                f"the purge of {video_id} before pushing it anew did not finish everywhere "
                f"({sentences}); nothing of {video_id} was erased or pushed.",
            )
        runs.append(run)
    return runs


def _unfinished(result: PurgeResult | None) -> int:
    return 0 if result is None else result.processing + result.not_submitted


def _republish_error(code: int, sentence: str) -> PreheatError:
    if code == 2:
        return AuthError(sentence)
    if code == 3:
        return QuotaExhausted(sentence)
    return ProviderError(sentence)


def _rebuildable(error: PreheatError) -> TypeGuard[ProviderError]:
    """Errors whose class takes one message (most); others are raised as they are."""
    return type(error) in (AuthError, ProviderError, QuotaExhausted)


def _plan(
    ledger: Ledger,
    units: Sequence[Unit],
    sources: Sequence[VideoSource],
    settings: Settings,
    head_first: HeadFirst | None,
    by: dt.datetime | None,
    strict: bool,
    options_for: Callable[[Unit], RunOptions],
) -> tuple[list[QueuedVideo], list[Feasibility] | None]:
    """A dry run: expand, count, and (with ``by``) the feasibility table; nothing written."""
    import dataclasses

    from cdn_preheat.app import expand_options
    from cdn_preheat.clock import utcnow
    from cdn_preheat.hls import expand_many
    from cdn_preheat.pipeline import QueuedVideo, describe_expansion

    base = expand_host(units)
    options = dataclasses.replace(expand_options(settings, strict=strict), cdn_host=base)
    expansions: dict[str, Expansion] = {}
    videos: list[QueuedVideo] = []

    async def expand_all() -> None:
        items = ((source, source.m3u8_url) for source in sources)
        async for source, outcome in expand_many(items, options):
            if isinstance(outcome, PreheatError):
                videos.append(QueuedVideo(source.video_id, source.m3u8_url, error=str(outcome)))
            else:
                expansions[source.video_id] = outcome
                videos.append(describe_expansion(source.video_id, outcome))

    run_coroutine(expand_all())  # the sync boundary: works inside a running loop too
    order = {source.video_id: index for index, source in enumerate(sources)}
    videos.sort(key=lambda video: order.get(video.video_id, 0))
    ordered = {v.video_id: expansions[v.video_id] for v in videos if v.video_id in expansions}
    if by is None:
        return videos, None
    now = utcnow()
    max_age = settings.cdn_preheat_max_age

    def groups(unit: Unit) -> list[PendingGroup]:
        return planned_groups(ledger, unit, ordered, base, head_first, now, max_age)

    return videos, feasibility(ledger, units, by, now, options_for, groups)


def run_unit_workers(
    ledger: Ledger,
    units: Sequence[Unit],
    *,
    stop: threading.Event,
    once: bool = False,
    idle: float = 30.0,
    wait_timeout: float = 600.0,
    wake: threading.Event | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> int:
    """``worker`` over targets: one worker loop per unit, side by side, on its own queue.

    A unit whose error no pause can cure (wrong keys) stops alone, its sentence
    logged (and given to ``on_error(unit name, sentence)``); the others go on.
    ``wake``: set it when work is queued to end every loop's wait at an empty
    queue (``serve`` does). The exit code is the worst of the units'.
    """
    from cdn_preheat.worker import run_worker

    codes: dict[str, int] = {}
    describe = describe_targets(ledger, units)
    # Each loop clears the wake it waited on: one shared event would let the first
    # loop to wake swallow it for the others, so each has its own, set from ``wake``.
    wakes = {unit.name: threading.Event() for unit in units}
    halt = threading.Event()  # every loop is over: the forwarder ends too
    forwarder = None
    if wake is not None:
        forwarder = threading.Thread(
            target=_fan_out, args=(wake, list(wakes.values()), stop, halt), daemon=True,
            name="targets-wake",
        )  # fmt: skip
        forwarder.start()

    def work(unit: Unit) -> None:
        try:
            codes[unit.name] = run_worker(
                scoped(ledger, unit.key), unit.provider, unit.settings, stop=stop, once=once,
                idle=idle, wait_timeout=wait_timeout,
                wake=wakes[unit.name] if wake is not None else None,
                targets=describe,
            )  # fmt: skip
        except PreheatError as exc:
            sentence = unit.explain(exc)
            log.error("%s", sentence)
            codes[unit.name] = exc.exit_code
            if on_error is not None:
                on_error(unit.name, sentence)

    try:
        _side_by_side([(unit.name, functools.partial(work, unit)) for unit in units])
    finally:
        halt.set()
        if forwarder is not None:
            forwarder.join()
    results = [UnitResult(u.name, u.key, exit_code=codes.get(u.name, 0)) for u in units]
    return worst_exit(results)


def _fan_out(
    wake: threading.Event,
    wakes: Sequence[threading.Event],
    stop: threading.Event,
    halt: threading.Event,
) -> None:
    """Pass each setting of ``wake`` on to every loop's own event, until ``stop`` or ``halt``.

    ``stop`` wakes every loop too (a loop waiting at an empty queue then ends).
    """
    while not halt.is_set():
        woken = wake.wait(0.5)
        if woken:
            wake.clear()
        if woken or stop.is_set():
            for event in wakes:
                event.set()


# The library API ------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetQuota:
    """One unit's quota today: the provider's figures and the ledger's reservations."""

    name: str
    day: str
    total: int | None
    available: int | None
    reserved_in_flight: int
    members: dict[str, int | None] = field(default_factory=dict)  # a pool: left per member
    error: str | None = None


class TargetsPreheater:
    """Preheat into every target of a targets file at once; every answer is per target.

    ::

        with TargetsPreheater.from_settings(load_settings()) as targets:
            run = targets.preheat([("ep-101", "https://origin.example.com/ep-101/master.m3u8")])
            for result in run.results:
                print(result.name, result.report.submitted if result.report else result.error)

    ``environ`` holds the variables the file names for the keys (default: the
    process environment). The ledger and the providers open on first use and
    close with :meth:`close`. Thread-safe as the ledger is: each call is independent.
    ``read_only=True`` opens the ledger for looking only (:meth:`status`,
    :meth:`quota`, :meth:`summary`, a dry run): no write lock, nothing written,
    as :class:`cdn_preheat.api.Preheater` does.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        fetch_transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
        read_only: bool = False,
    ) -> None:
        self.settings = settings
        self.read_only = read_only
        self._environ = environ
        # Makes the transport of every playlist fetch (``serve`` guards them against SSRF).
        self.fetch_transport = fetch_transport
        self._units: list[Unit] | None = None
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        fetch_transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
        read_only: bool = False,
    ) -> TargetsPreheater:
        return cls(settings, environ=environ, fetch_transport=fetch_transport, read_only=read_only)

    @property
    def units(self) -> list[Unit]:
        with self._lock:
            if self._units is None:
                self._units = build_units(resolve_targets(self.settings, self._environ))
            return self._units

    @property
    def ledger(self) -> Ledger:
        from cdn_preheat.ledger import open_ledger

        with self._lock:
            if self._ledger is None:
                self._ledger = open_ledger(self.settings, read_only=self.read_only)
            return self._ledger

    def _writing(self, what: str) -> None:
        from cdn_preheat.errors import InputError

        if self.read_only:
            raise InputError(f"{what} writes to the ledger; this TargetsPreheater is read-only.")

    def preheat(
        self,
        videos: Sequence[tuple[str, str] | VideoSource],
        *,
        head_first: HeadFirst | str | None = None,
        wait: bool = True,
        wait_timeout: float = 600.0,
        by: dt.datetime | str | None = None,
        dry_run: bool = False,
        reset: bool = False,
        purge: bool = False,
        only_these: bool = False,
        strict: bool = False,
        verify: bool = False,
        verify_sample: int | None = None,
        stop: threading.Event | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> TargetsRun:
        """Expand each video once, queue it for every target, push them side by side.

        ``head_first``: a :class:`HeadFirst`, or its text (``"10"``, ``"60s"``,
        ``"fifo"``: plain order); None: the default. ``by``: a deadline (or its
        text, ``--by``): the run first reports per target whether its queue can
        be warm by then (``run.feasibility``); with ``dry_run`` it stops there.
        ``reset``: forget the videos' records first and push them all again;
        ``purge`` (with ``reset``): purge their old URLs on every target before,
        all or nothing (:func:`purge_before_republish`). ``only_these`` (one
        video): push only its URLs, other queued videos stay queued.
        ``verify``: then probe each target's own URLs of every video queued, a
        sample each (``verify_sample`` probes, default 20; ``run.verified``,
        ``run.hit_ratios()``). ``on_progress(n)``:
        n more URLs were pushed, on any target.
        """
        from cdn_preheat.api import DEFAULT_VERIFY_SAMPLE
        from cdn_preheat.clock import utcnow
        from cdn_preheat.pipeline import DEFAULT_HEAD_FIRST
        from cdn_preheat.pipeline import HeadFirst as Head
        from cdn_preheat.source import VideoSource as Source

        if isinstance(head_first, str):
            head = Head.parse(head_first)
        else:
            head = head_first if head_first is not None else DEFAULT_HEAD_FIRST
        deadline = parse_deadline(by, utcnow()) if isinstance(by, str) else by
        if not dry_run:
            self._writing("preheat")
        sources: list[VideoSource] = []
        for n, video in enumerate(videos, 1):
            if isinstance(video, tuple):
                sources.append(Source(video[0], video[1], n))
            else:
                sources.append(video)
        units = self.units
        run = preheat(
            self.ledger, units, sources, self.settings,
            head_first=head, wait=wait, wait_timeout=wait_timeout, by=deadline,
            dry_run=dry_run, reset=reset, purge=purge, only_these=only_these, strict=strict,
            stop=stop, on_progress=on_progress,
        )  # fmt: skip
        if verify and not dry_run and not (stop is not None and stop.is_set()):
            sample = verify_sample if verify_sample is not None else DEFAULT_VERIFY_SAMPLE
            # Each target's own URLs at its own host, as ``verify`` reads them; a video
            # whose playlist failed (or that was never queued) has nothing to probe, and a
            # stopped run probes nothing.
            run.verified = [
                self.verify(video.video_id, sample=sample, min_hit_ratio=0.0)
                for video in run.videos
                if video.error is None and self.ledger.get_video(video.video_id) is not None
            ]
        return run

    def summary(self, run: TargetsRun | None = None) -> list[TargetSummary]:
        """One line per target: ``run``'s outcome with the ledger's counts now.

        Without ``run`` (after :meth:`queue`): the queue per target, nothing pushed.
        """
        units = self.units
        results = run.results if run is not None else [UnitResult(u.name, u.key) for u in units]
        ratios = (run.hit_ratios() if run is not None else None) or {}
        by_key = self.ledger.counts_by_target()
        rows = []
        for unit, result in zip(units, results, strict=True):
            counts = by_key.get(unit.key, {})
            report = result.report
            quota = unit.quota
            rows.append(
                TargetSummary(
                    name=unit.name,
                    provider=unit.members[0].spec.provider,
                    area=unit.key[1],
                    members=tuple(m.name for m in unit.members) if unit.is_pool else (),
                    pushed=report.submitted if report else 0,
                    done=counts.get(UrlState.DONE, 0),
                    failed=counts.get(UrlState.FAILED, 0) + counts.get(UrlState.INVALID, 0),
                    pending=counts.get(UrlState.PENDING, 0) + counts.get(UrlState.RESERVED, 0),
                    in_flight=counts.get(UrlState.SUBMITTED, 0),
                    quota_left=report.quota_left_today if report else (
                        quota.available if quota else None
                    ),
                    requests=report.requests if report else 0,
                    wasted_requests=report.wasted_requests if report else 0,
                    quota_exhausted=bool(report and report.quota_exhausted),
                    pushed_by=dict(result.pushed_by),
                    set_aside=dict(result.set_aside),
                    error=result.error,
                    hit_ratio=ratios.get(unit.name),
                )
            )  # fmt: skip
        return rows

    def queue(
        self,
        videos: Sequence[tuple[str, str] | VideoSource],
        *,
        head_first: HeadFirst | str | None = "10",
        reset: bool = False,
        strict: bool = False,
    ) -> list[QueuedVideo]:
        """Expand each video once and queue it for every target; push nothing (workers do).

        ``head_first`` as :meth:`cdn_preheat.api.Preheater.queue` takes it (None or
        ``"fifo"``: plain order). No CDN API is called: a target with wrong keys is
        found by its worker (:meth:`work`), which stops alone. A video whose
        playlist fails is its own entry's ``error``.
        """
        import dataclasses

        from cdn_preheat.app import expand_options
        from cdn_preheat.pipeline import HeadFirst as Head
        from cdn_preheat.source import VideoSource as Source

        if isinstance(head_first, str):
            head_first = Head.parse(head_first)
        self._writing("queue")

        sources = [
            Source(video[0], video[1], n) if isinstance(video, tuple) else video
            for n, video in enumerate(videos, 1)
        ]
        options = expand_options(self.settings, strict=strict)
        if self.fetch_transport is not None:
            options = dataclasses.replace(options, transport=self.fetch_transport)
        return queue_videos_for_units(
            self.ledger, self.units, sources, options,
            head_first=head_first, max_age=self.settings.cdn_preheat_max_age, reset=reset,
        )  # fmt: skip

    def status(self, video_id: str | None = None) -> list[TargetCounts]:
        """URL counts by state per target (a pool's also per member)."""
        units = self.units
        return status_by_unit(self.ledger, units, video_id)

    def quota(self) -> list[TargetQuota]:
        """Each target's quota today, read from the providers side by side."""
        from cdn_preheat.clock import quota_day, utcnow

        units = self.units
        check_units(units, live_quota)
        rows = []
        for unit in units:
            offset = unit.settings.cdn_preheat_quota_utc_offset_hours
            if offset is None:
                offset = unit.provider.limits.quota_utc_offset_hours
            day = quota_day(utcnow(), offset)
            book = self.ledger.quota_day(*unit.key, day)
            quota = unit.quota
            members = unit.provider.left() if isinstance(unit.provider, PoolProvider) else {}
            rows.append(
                TargetQuota(
                    unit.name, day, quota.total if quota else None,
                    quota.available if quota else None, book.inflight if book else 0,
                    members, unit.explain(unit.error) if unit.error else None,
                )
            )  # fmt: skip
        return rows

    def verify(
        self,
        video_id: str,
        *,
        sample: int | None = 50,
        requeue: bool = False,
        min_hit_ratio: float = 1.0,
        seed: int = 0,
        on_progress: Callable[[int], None] | None = None,
    ) -> TargetsVerify:
        """Probe each target's own URLs of the video at its CDN host, side by side.

        ``sample`` per target (playlists and every rendition's start always;
        ``None``: all), read with each target's vendor's cache header.
        ``run.passed`` when every target reaches ``min_hit_ratio`` with every
        probe answered; ``run["name"]`` is one target's :class:`TargetVerify`.
        ``requeue`` queues each target's missed URLs again, for that target only.
        """
        if requeue:
            self._writing("verify --requeue")
        return verify_targets(
            self.ledger, self.units, video_id, sample=sample, requeue=requeue,
            min_hit_ratio=min_hit_ratio, seed=seed, on_progress=on_progress,
        )  # fmt: skip

    def purge(
        self,
        *,
        urls: Sequence[str] = (),
        dirs: Sequence[str] = (),
        video_id: str | None = None,
        delete: bool = False,
        follow: bool = True,
        wait_timeout: float = 600.0,
        stop: threading.Event | None = None,
    ) -> TargetsPurge:
        """Purge URLs, directories or a video's URLs on every target (a pool: each member).

        URLs on any target's host are moved to each target's own host. One
        :class:`TargetPurge` per target; a target that fails (wrong keys, quota
        spent) carries its sentence and exit code, the others are purged all
        the same. ``run.exit_code`` is the worst.
        """
        self._writing("purge")
        return purge_targets(
            self.ledger, self.units, urls=urls, dirs=dirs, video_id=video_id, delete=delete,
            follow=follow, wait_timeout=wait_timeout, stop=stop,
        )  # fmt: skip

    def work(
        self,
        *,
        stop: threading.Event,
        once: bool = False,
        idle: float = 30.0,
        wait_timeout: float = 600.0,
        wake: threading.Event | None = None,
        on_error: Callable[[str, str], None] | None = None,
    ) -> int:
        """Drain every target's queue side by side until ``stop`` (or once).

        ``wake``: set it when work is queued (every target's idle wait ends).
        ``on_error(target, sentence)``: a target's loop stopped on an error no
        pause cures (wrong keys); the others go on.
        """
        self._writing("work")
        units = self.units
        return run_unit_workers(
            self.ledger, units, stop=stop, once=once, idle=idle, wait_timeout=wait_timeout,
            wake=wake, on_error=on_error,
        )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            if self._units is not None:
                close_units(self._units)
                self._units = None
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None

    def __enter__(self) -> TargetsPreheater:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify_units(
    ledger: Ledger, units: Sequence[Unit], video_id: str, sample: int | None = 20
) -> dict[str, VerifyReport]:
    """Probe each target's own pushed URLs of the video (its host, its vendor's header).

    A sample per target (``None``: all), chosen as ``verify`` chooses; a target
    that pushed nothing of the video has nothing probed (its ratio is None).
    """
    from cdn_preheat.verify import options_from_settings, select_sample, verify_urls

    records = ledger.url_records(video_id)
    reports = {}
    for unit in units:
        mine = [r for r in records if (r.provider, r.area) == unit.key]
        probes = select_sample(mine, sample, video_id=video_id)
        reports[unit.name] = verify_urls(probes, options=options_from_settings(unit.settings))
    return reports


# Verify and purge per target ------------------------------------------------------------
@dataclass(frozen=True)
class TargetVerify:
    """One target's (or pool's) verification of a video at its own CDN host.

    ``report`` holds the probes of the target's own URLs, read with its
    vendor's cache header; ``gate`` says whether they pass (nothing probed, a
    target that holds none of the video, never passes).
    """

    name: str
    key: tuple[str, str]
    provider: str
    cdn_host: str | None
    report: VerifyReport
    gate: GateResult
    requeued: int = 0

    @property
    def passed(self) -> bool:
        return self.gate.passed

    @property
    def hit_ratio(self) -> float | None:
        return self.report.overall.ratio


@dataclass(frozen=True)
class TargetsVerify:
    """A video verified on every target: one :class:`TargetVerify` each, in file order."""

    video_id: str
    results: tuple[TargetVerify, ...]

    @property
    def passed(self) -> bool:
        """Every target reached the ratio and every probe was answered."""
        return all(result.passed for result in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def __getitem__(self, name: str) -> TargetVerify:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)


def verify_targets(
    ledger: Ledger,
    units: Sequence[Unit],
    video_id: str,
    *,
    sample: int | None = 50,
    requeue: bool = False,
    min_hit_ratio: float = 1.0,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> TargetsVerify:
    """Probe each unit's own URLs of the video, side by side, and gate each.

    A unit's URLs are the ledger rows under its key (its host mapped at
    queueing), probed with its provider's cache header; ``requeue`` queues the
    ones no CDN layer held again, for that unit only. The same exit rules as
    one provider's ``verify`` apply per unit (:func:`cdn_preheat.verify.gate`).
    """
    from cdn_preheat.errors import InputError
    from cdn_preheat.pipeline import requeue_missed
    from cdn_preheat.verify import gate, missed_urls, options_from_settings, select_sample
    from cdn_preheat.verify import verify_urls as probe

    if sample is not None and sample < 1:
        raise InputError("sample must be at least 1 (None probes every URL).")
    if ledger.get_video(video_id) is None:
        raise InputError(f"no video {video_id!r} in the ledger.")
    records = ledger.url_records(video_id)
    found: dict[str, TargetVerify] = {}
    lock = threading.Lock()

    def progressed(n: int) -> None:
        if on_progress is not None:
            with lock:
                on_progress(n)

    def one(unit: Unit) -> None:
        mine = [r for r in records if (r.provider, r.area) == unit.key]
        probes = select_sample(mine, sample, seed, video_id=video_id)
        report = probe(probes, options=options_from_settings(unit.settings),
                       on_progress=progressed)  # fmt: skip
        requeued = 0
        if requeue:
            requeued = requeue_missed(ledger, *unit.key, video_id, missed_urls(report))
        found[unit.name] = TargetVerify(
            unit.name, unit.key, unit.members[0].spec.provider, unit.cdn_host, report,
            gate(report, min_hit_ratio), requeued,
        )  # fmt: skip

    _side_by_side([(unit.name, functools.partial(one, unit)) for unit in units])
    return TargetsVerify(video_id, tuple(found[unit.name] for unit in units))


@dataclass(frozen=True)
class TargetPurge:
    """One target's purge: its result, or the sentence it failed with.

    A pool's members are purged one by one (each account caches on its own
    edges), so ``pool`` names the pool a member belongs to.
    """

    name: str
    provider: str
    cdn_host: str | None
    result: PurgeResult | None = None
    error: str | None = None
    exit_code: int = 0
    pool: str | None = None


@dataclass(frozen=True)
class TargetsPurge:
    """A purge on every target: one :class:`TargetPurge` each, in file order."""

    results: tuple[TargetPurge, ...]

    @property
    def exit_code(self) -> int:
        """The worst: refused input or keys (2), then quota (3), then failures (1)."""
        return worst_code(result.exit_code for result in self.results)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def __getitem__(self, name: str) -> TargetPurge:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)


def worst_code(codes: Iterable[int]) -> int:
    """A configuration error (2) before quota (3) before others (1); 0 when all are 0."""
    present = {code for code in codes if code}
    for code in (2, 3, 1):
        if code in present:
            return code
    return max(present, default=0)


def map_to_host(url: str, hosts: Iterable[str | None], to_host: str | None) -> str:
    """``url`` moved to ``to_host`` when it is on any target's host (foreign URLs kept)."""
    if to_host is None:
        return url
    netloc = urlsplit(url).netloc.lower()
    if netloc in {host for host in hosts if host}:
        return map_host(url, netloc, to_host)
    return url


def purge_targets(
    ledger: Ledger,
    units: Sequence[Unit],
    *,
    urls: Sequence[str] = (),
    dirs: Sequence[str] = (),
    video_id: str | None = None,
    delete: bool = False,
    follow: bool = True,
    wait_timeout: float = 600.0,
    stop: threading.Event | None = None,
    check: bool = True,
) -> TargetsPurge:
    """Purge on every target side by side, each URL moved to the target's own host.

    ``urls`` and ``dirs`` on any target's CDN host are purged on each target at
    its host (as a push maps them); ``video_id`` adds every URL the ledger holds
    for the video, mapped the same way. A pool is purged on each member: each
    account's edges hold their own copies. A target's failure (refused keys, a
    spent quota, a mode its vendor lacks) is its own result with its sentence.
    """
    from cdn_preheat import purge as purging
    from cdn_preheat.api import PurgeResult as Result
    from cdn_preheat.errors import InputError

    if delete and not dirs:
        raise InputError("--delete applies to --dir purges only.")
    wanted = purging.clean_urls(urls) if check else list(urls)
    directories = purging.clean_dirs(dirs)
    if video_id is not None:
        held = purging.video_urls(ledger, video_id)
        wanted = list(dict.fromkeys([*wanted, *held]))
    if not wanted and not directories:
        raise InputError("give URLs to purge, --dir DIR or --video VIDEO_ID.")
    hosts = [unit.cdn_host for unit in units]
    jobs: list[tuple[Target, Provider, str | None]] = []
    for unit in units:
        if isinstance(unit.provider, PoolProvider):
            for member in unit.members:
                own = KeyedProvider(unit.provider.members[member.name], member.name)
                jobs.append((member, own, unit.name))
        else:
            jobs.append((unit.members[0], unit.provider, None))
    found: dict[str, TargetPurge] = {}
    options = purging.PurgeOptions(wait=follow, timeout=wait_timeout)

    def one(target: Target, provider: Provider, pool: str | None) -> None:
        host = target.cdn_host
        mine = list(dict.fromkeys(map_to_host(u, hosts, host) for u in wanted))
        folders = list(dict.fromkeys(map_to_host(d, hosts, host) for d in directories))
        kind = target.spec.provider
        try:
            report = purging.purge(ledger, provider, mine, folders, delete=delete,
                                   options=options, stop=stop)  # fmt: skip
        except PreheatError as exc:
            sentence = target.explain(exc)
            log.warning("%s", sentence)
            found[target.name] = TargetPurge(target.name, kind, host, None, sentence,
                                             exc.exit_code, pool)  # fmt: skip
            return
        result = Result._of(report)
        error = None
        code = 0
        if result.quota_exhausted is not None:
            error = target.explain(result.quota_exhausted)
            code = QuotaExhausted.exit_code
        elif result.failed:
            error = f"target {target.name}: {result.failed} of {result.submitted} purges failed."
            code = 1
        found[target.name] = TargetPurge(target.name, kind, host, result, error, code, pool)

    _side_by_side([(t.name, functools.partial(one, t, p, pool)) for t, p, pool in jobs])
    return TargetsPurge(tuple(found[target.name] for target, _, _ in jobs))
