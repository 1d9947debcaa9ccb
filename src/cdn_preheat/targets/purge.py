"""Purges per target: URLs, directories or a video's URLs purged on every target at
its own host (a pool: on each member), and the all-or-nothing purge that comes
before a republish (``push --reset --purge``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cdn_preheat.errors import AuthError, PreheatError, ProviderError, QuotaExhausted
from cdn_preheat.ledger.base import Ledger
from cdn_preheat.providers.base import Provider
from cdn_preheat.targets.pool import KeyedProvider, PoolProvider
from cdn_preheat.targets.queueing import map_host
from cdn_preheat.targets.results import worst_code
from cdn_preheat.targets.units import side_by_side

if TYPE_CHECKING:
    from cdn_preheat.api import PurgeResult
    from cdn_preheat.targets.spec import Target
    from cdn_preheat.targets.units import Unit

log = logging.getLogger("cdn_preheat.targets")  # one logger for the whole package


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

    side_by_side([(t.name, functools.partial(one, t, p, pool)) for t, p, pool in jobs])
    return TargetsPurge(tuple(found[target.name] for target, _, _ in jobs))


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
