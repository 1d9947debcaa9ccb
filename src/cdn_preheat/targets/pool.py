"""The providers a unit pushes through: one account under its target's ledger key
(:class:`KeyedProvider`), or several accounts serving one CDN host as one
(:class:`PoolProvider`, targets sharing a ``pool``: their quotas add up).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from cdn_preheat.errors import AuthError, BatchTooLarge, InvalidUrls, ProviderError, QuotaExhausted
from cdn_preheat.providers.base import (
    Features,
    Limits,
    Provider,
    Quota,
    SubmitResult,
    TaskEntry,
    TaskState,
)
from cdn_preheat.ratelimit import Budget, Pacing

log = logging.getLogger("cdn_preheat.targets")  # one logger for the whole package


POOL_AREA = "pool"  # the area of a pool's ledger key: (pool name, "pool")


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

    def set_lead(self, api: str, leading: bool | None, *, apart_from: str | None = None) -> None:
        # The pool's one poller asks each member for its tasks: it leads each member's
        # status budget (where that budget is the member's own), or it polls every
        # member at a worker's share while all of them push.
        for member in self._members:
            with contextlib.suppress(KeyError):
                member.set_lead(api, leading, apart_from=apart_from)


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


def member_of(task_id: str) -> str:
    """The member that pushed a pool's task (its id ``MEMBER/TASKID``); "" if untagged."""
    return _untag(task_id)[0]


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
