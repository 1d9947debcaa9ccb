"""Units: what runs side by side. A unit is a target, or a pool of targets, with
its provider under its ledger key; built from the targets in the file's order,
checked (their live quota read) side by side, closed together.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cdn_preheat.errors import PreheatError, ProviderError
from cdn_preheat.providers.base import Provider, Quota
from cdn_preheat.targets.pool import KeyedProvider, PoolProvider

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.targets.spec import Target

log = logging.getLogger("cdn_preheat.targets")  # one logger for the whole package


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

    side_by_side([(unit.name, functools.partial(check, unit)) for unit in units])


def live_quota(provider: Provider) -> Quota:
    """The provider's quota, riding out a flaky API (wrong credentials raise at once)."""
    from cdn_preheat.ratelimit import call_with_retries

    return call_with_retries(provider.quota, attempts=8)


def side_by_side(jobs: Sequence[tuple[str, Callable[[], None]]]) -> None:
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
