"""Several targets in one run, against several sandbox accounts over real HTTP.

The library runs in this process (one module-wide sandbox with three Tencent
accounts and Qiniu); each test has its own ledger and its own videos, and counts
what each account's emulator received.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdn_preheat.config import Settings, load_settings
from cdn_preheat.errors import AuthError
from cdn_preheat.hls import ExpandOptions, expand
from cdn_preheat.ledger import open_ledger
from cdn_preheat.ledger.base import Ledger, UrlState
from cdn_preheat.pipeline import HeadFirst
from cdn_preheat.sandbox.edgeone import SANDBOX_ZONE_ID
from cdn_preheat.sandbox.server import Sandbox, TencentAccount
from cdn_preheat.sandbox.tencent import TencentLimits
from cdn_preheat.source import VideoSource
from cdn_preheat.targets import (
    PoolProvider,
    TargetsPreheater,
    TargetsRun,
    Unit,
    build_units,
    close_units,
    preheat,
    resolve_targets,
    status_by_unit,
    verify_units,
)

ACCOUNTS = ("tencent-b", "tencent-c")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    accounts = {name: TencentAccount(limits=TencentLimits(task_delay=0.1)) for name in ACCOUNTS}
    box = Sandbox(videos=8, variants=2, segments=6, task_delay=0.1, tencent_accounts=accounts)
    with box:
        yield box


@pytest.fixture(autouse=True)
def generous_quotas(sandbox: Sandbox) -> None:
    for name in ("tencent", *ACCOUNTS):
        sandbox.apis[name].limits.push_per_day = 100_000  # type: ignore[attr-defined]


def received(sandbox: Sandbox, name: str) -> list[str]:
    return sandbox.apis[name].received_urls()  # type: ignore[attr-defined, no-any-return]


class Run:
    """One configuration of targets over the sandbox, with its own ledger."""

    def __init__(
        self,
        sandbox: Sandbox,
        tmp_path: Path,
        names: tuple[str, ...],
        *,
        pools: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.env = sandbox.targets_file(tmp_path / "targets.toml", names, pools=pools)
        self.env.update(env or {})
        self.settings: Settings = load_settings(
            cdn_preheat_targets=self.env["CDN_PREHEAT_TARGETS"],
            cdn_preheat_db=str(tmp_path / "ledger.sqlite3"),
            cdn_preheat_invalid_retry_seconds=0.2,
        )
        self.before = {name: len(received(sandbox, name)) for name in (*names, *ACCOUNTS)}

    def units(self) -> list[Unit]:
        return build_units(resolve_targets(self.settings, self.env))

    def new_urls(self, name: str) -> list[str]:
        return received(self.sandbox, name)[self.before.get(name, 0) :]

    def __call__(self, *video_ids: str, **options: Any) -> TargetsRun:
        sources = [VideoSource(v, self.sandbox.video_url(v), n) for n, v in enumerate(video_ids)]
        units = options.pop("units", None) or self.units()
        ledger = open_ledger(self.settings)
        try:
            return preheat(
                ledger, units, sources, self.settings,
                head_first=HeadFirst(2), wait_timeout=30, **options,
            )  # fmt: skip
        finally:
            ledger.close()
            close_units(units)

    def ledger(self) -> Ledger:
        return open_ledger(self.settings)


def edge(sandbox: Sandbox, video_id: str) -> list[str]:
    """The video's URLs on the CDN host (the sandbox edge)."""
    options = ExpandOptions(cdn_host=sandbox.edge.netloc)
    return [u.url for u in expand(sandbox.video_url(video_id), options).urls]


def test_one_expansion_fans_out_to_every_target_once(sandbox: Sandbox, tmp_path: Path) -> None:
    names = ("tencent", "tencent-b", "qiniu", "edgeone")
    run = Run(sandbox, tmp_path, names)
    urls = edge(sandbox, "demo-1")
    outcome = run("demo-1")
    assert outcome.exit_code == 0, [r.error for r in outcome.results]
    for name in names:
        assert sorted(run.new_urls(name)) == sorted(urls), name  # all, each once
    ledger = run.ledger()
    try:
        by_key = ledger.counts_by_target("demo-1")
        assert by_key[("tencent", "mainland")] == {UrlState.DONE: len(urls)}
        assert by_key[("tencent-b", "mainland")] == {UrlState.DONE: len(urls)}
        assert by_key[("qiniu", "global")] == {UrlState.DONE: len(urls)}
        assert by_key[("edgeone", SANDBOX_ZONE_ID)] == {UrlState.DONE: len(urls)}
    finally:
        ledger.close()
    assert [r.report.done for r in outcome.results if r.report] == [len(urls)] * 4

    ledger, units = run.ledger(), run.units()
    try:  # each target probes its own URLs of the video, once each
        reports = verify_units(ledger, units, "demo-1", sample=None)
    finally:
        ledger.close()
        close_units(units)
    assert {name: r.overall.total for name, r in reports.items()} == dict.fromkeys(names, len(urls))
    assert reports["tencent-b"].overall.cached == len(urls)

    again = run("demo-1")  # nothing is pushed twice to any target
    assert again.videos[0].already_preheated
    for name in names:
        assert len(run.new_urls(name)) == len(urls)


def test_a_target_added_later_gets_the_videos_the_others_have(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    first = Run(sandbox, tmp_path, ("tencent",))
    assert first("demo-2").exit_code == 0
    later = Run(sandbox, tmp_path, ("tencent", "tencent-c"))
    later.before = first.before | {"tencent-c": len(received(sandbox, "tencent-c"))}
    outcome = later("demo-2")
    assert outcome.exit_code == 0
    urls = edge(sandbox, "demo-2")
    assert sorted(later.new_urls("tencent-c")) == sorted(urls)
    assert sorted(later.new_urls("tencent")) == sorted(urls)  # not pushed again


def test_wrong_keys_fail_only_that_target_with_its_own_variables(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    wrong = "not-the-key-of-tencent-b-42"
    run = Run(
        sandbox, tmp_path, ("tencent", "tencent-b"), env={"SANDBOX_TENCENT_B_KEY_SECRET": wrong}
    )
    outcome = run("demo-3")
    good, bad = outcome.results
    assert good.error is None and good.report is not None
    assert sorted(run.new_urls("tencent")) == sorted(edge(sandbox, "demo-3"))
    assert run.new_urls("tencent-b") == []
    assert bad.exit_code == 2 and outcome.exit_code == 2
    assert bad.error is not None
    assert bad.error.startswith("target tencent-b: Tencent Cloud rejected the credentials")
    assert "SANDBOX_TENCENT_B_KEY_ID and SANDBOX_TENCENT_B_KEY_SECRET" in bad.error
    assert "TENCENT_SECRET_KEY" not in bad.error and wrong not in bad.error
    ledger = run.ledger()
    try:  # queued for the failed target all the same: fixing its keys pushes them
        pending = ledger.counts_by_target("demo-3")[("tencent-b", "mainland")]
        assert pending == {UrlState.PENDING: len(edge(sandbox, "demo-3"))}
    finally:
        ledger.close()


def test_every_target_refusing_its_keys_fails_the_run_before_queueing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    run = Run(sandbox, tmp_path, ("tencent-b",), env={"SANDBOX_TENCENT_B_KEY_SECRET": "nope-1234"})
    with pytest.raises(AuthError, match="SANDBOX_TENCENT_B_KEY_SECRET"):
        run("demo-3")
    ledger = run.ledger()
    try:
        assert ledger.list_videos() == []
    finally:
        ledger.close()


def test_a_pool_spends_its_members_combined_quota_without_pushing_a_url_twice(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    urls = edge(sandbox, "demo-4")
    n = len(urls)
    b, c = sandbox.apis["tencent-b"], sandbox.apis["tencent-c"]
    b.limits.push_per_day = b.quota_used() + n // 2 + 3  # type: ignore[attr-defined]
    c.limits.push_per_day = c.quota_used() + n // 2 + 3  # type: ignore[attr-defined]
    run = Run(sandbox, tmp_path, ACCOUNTS, pools=dict.fromkeys(ACCOUNTS, "premiere"))
    run.settings = run.settings.model_copy(update={"cdn_preheat_batch_size": 4})
    outcome = run("demo-4")
    assert outcome.exit_code == 0, [r.error for r in outcome.results]
    from_b, from_c = run.new_urls("tencent-b"), run.new_urls("tencent-c")
    assert from_b and from_c  # neither account's quota alone covers the video
    assert not set(from_b) & set(from_c)
    assert sorted(from_b + from_c) == sorted(urls)
    [result] = outcome.results
    assert result.pushed_by == {"tencent-b": len(from_b), "tencent-c": len(from_c)}
    ledger = run.ledger()
    try:
        [row] = status_by_unit(ledger, run.units())
        assert row.counts == {UrlState.DONE: n}
        assert row.pushed_by == result.pushed_by  # read back from the recorded task ids
    finally:
        ledger.close()


def test_a_pool_spills_over_when_an_account_turns_out_spent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """tencent-b reports the most quota left, but another party spends it before the
    push: its refusal sends the batch (and the rest) to tencent-c."""
    urls = edge(sandbox, "demo-5")
    b = sandbox.apis["tencent-b"]
    b.limits.push_per_day = b.quota_used() + 10 * len(urls)  # type: ignore[attr-defined]
    run = Run(sandbox, tmp_path, ACCOUNTS, pools=dict.fromkeys(ACCOUNTS, "premiere"))
    sandbox.apis["tencent-c"].limits.push_per_day = (  # type: ignore[attr-defined]
        sandbox.apis["tencent-c"].quota_used() + 2 * len(urls)  # type: ignore[attr-defined]
    )
    units = run.units()
    pool = units[0].provider
    assert isinstance(pool, PoolProvider)
    member = pool.members["tencent-b"]
    original = member.submit

    def spent_meanwhile(batch: Any) -> Any:
        b.limits.push_per_day = b.quota_used()  # type: ignore[attr-defined]
        return original(batch)

    member.submit = spent_meanwhile  # type: ignore[method-assign]
    outcome = run("demo-5", units=units)
    assert outcome.exit_code == 0, [r.error for r in outcome.results]
    assert run.new_urls("tencent-b") == []
    assert sorted(run.new_urls("tencent-c")) == sorted(urls)
    assert outcome.results[0].pushed_by == {"tencent-c": len(urls)}


def test_an_exhausted_pool_keeps_the_rest_queued_and_says_so(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    urls = edge(sandbox, "demo-6")
    for name in ACCOUNTS:
        api = sandbox.apis[name]
        api.limits.push_per_day = api.quota_used() + 5  # type: ignore[attr-defined]
    run = Run(sandbox, tmp_path, ("tencent", *ACCOUNTS), pools=dict.fromkeys(ACCOUNTS, "p"))
    outcome = run("demo-6")
    single, pool = outcome.results
    assert single.exit_code == 0 and sorted(run.new_urls("tencent")) == sorted(urls)
    assert pool.exit_code == 3 and outcome.exit_code == 3
    assert pool.report is not None and pool.report.quota_exhausted
    assert pool.report.pending == len(urls) - 10
    assert Counter(run.new_urls("tencent-b") + run.new_urls("tencent-c")).most_common(1)[0][1] == 1


def test_by_a_deadline_names_the_videos_a_target_would_leave_cold(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    n7, n8 = len(edge(sandbox, "demo-7")), len(edge(sandbox, "demo-8"))
    api = sandbox.apis["tencent-b"]
    api.limits.push_per_day = api.quota_used() + n7 + 4  # type: ignore[attr-defined]
    run = Run(sandbox, tmp_path, ("tencent", "tencent-b"))
    by = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
    outcome = run("demo-7", "demo-8", by=by, dry_run=True)
    assert outcome.feasibility is not None
    ok, short = outcome.feasibility
    assert ok.feasible and ok.queued == n7 + n8 and ok.cold == []
    assert short.queued == n7 + n8 and short.quota_left == n7 + 4
    assert not short.feasible
    if short.quota_by_deadline == n7 + 4:  # the provider's day does not turn before `by`
        cold = {c.video_id: c for c in short.cold}
        assert "demo-8" in cold  # queued second: its tail is claimed last
        assert all(c.reached < c.pending for c in short.cold)
        warm = {"demo-7": n7, "demo-8": n8}
        reached = sum(c.reached for c in short.cold) + sum(
            count for video, count in warm.items() if video not in cold
        )
        assert reached == short.capacity == n7 + 4
    assert run.new_urls("tencent") == [] and run.new_urls("tencent-b") == []  # dry run
    ledger = run.ledger()
    try:
        assert ledger.list_videos() == []  # and nothing was written
    finally:
        ledger.close()


def test_the_library_answers_per_target(sandbox: Sandbox, tmp_path: Path) -> None:
    run = Run(sandbox, tmp_path, ("tencent-b", "qiniu"))
    urls = edge(sandbox, "demo-2")
    with TargetsPreheater.from_settings(run.settings, environ=run.env) as targets:
        outcome = targets.preheat([("demo-2", sandbox.video_url("demo-2"))])
        assert [r.name for r in outcome.results] == ["tencent-b", "qiniu"]
        assert [r.report.submitted for r in outcome.results if r.report] == [len(urls)] * 2
        status = {row.name: row.counts for row in targets.status("demo-2")}
        done = {UrlState.DONE: len(urls)}
        assert status == {"tencent-b": done, "qiniu": done}
        quota = {row.name: row for row in targets.quota()}
        b = sandbox.apis["tencent-b"]
        assert quota["tencent-b"].available == b.limits.push_per_day - b.quota_used()  # type: ignore[attr-defined]
        assert quota["qiniu"].error is None


def test_a_pool_member_with_wrong_keys_is_set_aside_and_the_pool_goes_on(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    wrong = "wrong-key-of-c-777"
    run = Run(
        sandbox, tmp_path, ACCOUNTS, pools=dict.fromkeys(ACCOUNTS, "p"),
        env={"SANDBOX_TENCENT_C_KEY_SECRET": wrong},
    )  # fmt: skip
    outcome = run("demo-3")
    [pool] = outcome.results
    assert pool.error is None
    assert sorted(run.new_urls("tencent-b")) == sorted(edge(sandbox, "demo-3"))
    assert run.new_urls("tencent-c") == []
    assert list(pool.set_aside) == ["tencent-c"]
    sentence = pool.set_aside["tencent-c"]
    assert sentence.startswith("target tencent-c: Tencent Cloud rejected the credentials")
    assert "SANDBOX_TENCENT_C_KEY_ID and SANDBOX_TENCENT_C_KEY_SECRET" in sentence
    assert wrong not in sentence
    assert outcome.exit_code == 2  # the configuration needs fixing, though nothing was lost


def purged_urls(sandbox: Sandbox, name: str) -> int:
    """URL purges the account was charged today, in any area."""
    api: Any = sandbox.apis[name]
    return sum(api.quota_used(area, "url") for area in ("mainland", "overseas", "global"))


def test_a_pool_is_verified_as_one_and_purged_on_every_member(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    run = Run(sandbox, tmp_path, ("tencent", *ACCOUNTS), pools=dict.fromkeys(ACCOUNTS, "p"))
    urls = edge(sandbox, "demo-7")
    used = {name: purged_urls(sandbox, name) for name in ACCOUNTS}
    with TargetsPreheater.from_settings(run.settings, environ=run.env) as targets:
        assert targets.preheat([("demo-7", sandbox.video_url("demo-7"))]).exit_code == 0
        checked = targets.verify("demo-7", sample=None)
        assert [t.name for t in checked.results] == ["tencent", "p"]  # a pool: one row
        assert checked["p"].key == ("p", "pool") and checked.passed
        assert checked["p"].report.overall.total == len(urls)  # its URLs, once each
        purged = targets.purge(urls=[urls[0]])
    # the pool's members each purge: either account's edges may hold a copy
    assert [(t.name, t.pool) for t in purged.results] == [
        ("tencent", None), ("tencent-b", "p"), ("tencent-c", "p"),
    ]  # fmt: skip
    assert purged.exit_code == 0, [t.error for t in purged.results]
    assert all(t.result is not None and t.result.done == 1 for t in purged.results)
    for name in ACCOUNTS:
        assert purged_urls(sandbox, name) > used[name], name  # charged to its own account


def test_a_pool_can_do_what_every_member_can_and_nothing_more(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from cdn_preheat.errors import InputError
    from cdn_preheat.purge import PurgeOptions, purge

    run = Run(sandbox, tmp_path, ACCOUNTS, pools=dict.fromkeys(ACCOUNTS, "p"))
    [unit] = run.units()
    pool = unit.provider
    assert isinstance(pool, PoolProvider)
    tencent = pool.members["tencent-b"].features
    assert pool.features == tencent  # one vendor: its features, purge --delete included
    folder = f"http://{sandbox.edge.netloc}/vod/pool-features/"
    ledger = run.ledger()
    try:
        report = purge(ledger, pool, [], [folder], delete=True, options=PurgeOptions(wait=False))
        assert report.submitted == 1 and report.failed == 0
        [task] = report.tasks  # one task on each member, under its name
        assert [part.split("/")[0] for part in task.split("|")] == list(ACCOUNTS)

        # Members whose vendors differ (built by hand: a targets file refuses such a
        # pool): only what both can do. Qiniu has no delete mode and no quota query.
        (tmp_path / "mixed").mkdir()
        mixed_run = Run(sandbox, tmp_path / "mixed", ("tencent-b", "qiniu"))
        units = mixed_run.units()
        mixed = PoolProvider("mixed", [(u.name, u.provider) for u in units])
        assert tencent.purge_delete and tencent.quota_query
        assert not mixed.features.purge_delete and not mixed.features.quota_query
        assert mixed.features.window_status  # both answer a window of tasks
        with pytest.raises(InputError, match="cannot delete cached copies"):
            purge(ledger, mixed, [], [folder], delete=True)
        close_units(units)
    finally:
        ledger.close()
        close_units([unit])


def test_a_read_only_preheater_looks_while_a_writer_holds_the_lock_and_writes_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    import sqlite3

    from cdn_preheat import TargetsPreheater as Public
    from cdn_preheat.errors import InputError

    run = Run(sandbox, tmp_path, ("tencent-b", "qiniu"))
    urls = edge(sandbox, "demo-6")
    with Public.from_settings(run.settings, environ=run.env) as targets:
        outcome = targets.preheat([("demo-6", sandbox.video_url("demo-6"))], verify=True)
        summary = {row.name: row for row in targets.summary(outcome)}
    assert outcome.exit_code == 0
    assert [row.done for row in summary.values()] == [len(urls)] * 2
    assert all(row.pushed == len(urls) and row.hit_ratio == 1.0 for row in summary.values())
    ratios = outcome.hit_ratios()
    assert ratios == {"tencent-b": 1.0, "qiniu": 1.0}
    assert outcome.verified is not None and [v.video_id for v in outcome.verified] == ["demo-6"]

    settings = run.settings.model_copy(update={"cdn_preheat_lock_timeout": 3.0})
    writer = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # what a worker holds while it claims
        with Public.from_settings(settings, environ=run.env, read_only=True) as looking:
            status = {row.name: row.counts for row in looking.status("demo-6")}
            assert status == {name: {UrlState.DONE: len(urls)} for name in ("tencent-b", "qiniu")}
            quota = {row.name: row for row in looking.quota()}
            assert quota["tencent-b"].error is None and quota["qiniu"].error is None
            assert [row.pending for row in looking.summary()] == [0, 0]
            with pytest.raises(InputError, match="read-only"):
                looking.preheat([("demo-6", sandbox.video_url("demo-6"))], reset=True)
            with pytest.raises(InputError, match="read-only"):
                looking.purge(urls=[urls[0]])
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert len(run.new_urls("tencent-b")) == len(urls)  # the refused reset pushed nothing


def test_a_stopped_push_probes_nothing_after_it(sandbox: Sandbox, tmp_path: Path) -> None:
    import threading

    run = Run(sandbox, tmp_path, ("tencent-b", "qiniu"))
    stop = threading.Event()
    stop.set()  # Ctrl-C came before the push: the run settles, nothing is verified
    with TargetsPreheater.from_settings(run.settings, environ=run.env) as targets:
        outcome = targets.preheat([("demo-5", sandbox.video_url("demo-5"))], verify=True,
                                  stop=stop)  # fmt: skip
        assert all(r.report is not None and r.report.interrupted for r in outcome.results)
        assert outcome.verified is None and outcome.hit_ratios() is None
        assert all(row.hit_ratio is None for row in targets.summary(outcome))


def test_every_webhook_event_of_a_targets_run_names_its_targets(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The push path and the worker path alike: ``targets`` names, ``video.targets`` entries."""
    import threading

    from cdn_preheat import notify

    names = ("tencent", *ACCOUNTS)
    run = Run(sandbox, tmp_path, names, pools=dict.fromkeys(ACCOUNTS, "premiere"))
    units = ["tencent", "premiere"]  # a pool is one target of the run
    with TargetsPreheater.from_settings(run.settings, environ=run.env) as targets:
        pushed = targets.preheat([("demo-6", sandbox.video_url("demo-6"))])  # push's own path
        assert pushed.exit_code == 0, [r.error for r in pushed.results]
        targets.queue([("demo-7", sandbox.video_url("demo-7"))])  # a worker finishes this one
        assert targets.work(stop=threading.Event(), once=True) == 0
        events = {e.payload["video"]["video_id"]: e.payload  # type: ignore[index]
                  for e in targets.ledger.list_events(notify.TOPIC)}  # fmt: skip
        statuses = {video: targets.status(video) for video in ("demo-6", "demo-7")}
    assert sorted(events) == ["demo-6", "demo-7"]
    for video_id, event in events.items():
        n = len(edge(sandbox, video_id))
        assert event["type"] == "video.done" and event["targets"] == units, event
        entries = {entry["name"]: entry for entry in event["video"]["targets"]}
        assert list(entries) == units
        for entry in entries.values():
            assert entry["state"] == "done" and entry["progress"] == 1.0, entry
            assert entry["counts"]["done"] == n and entry["counts"]["pending"] == 0, entry
            assert entry["provider"] == "tencent" and entry["area"] in ("mainland", "pool")
        members = entries["premiere"]["members"]
        assert [m["name"] for m in members] == list(ACCOUNTS)
        [_, pool] = statuses[video_id]
        assert {m["name"]: m["pushed"] for m in members} == {
            member: pool.pushed_by.get(member, 0) for member in ACCOUNTS
        }
        assert sum(m["pushed"] for m in members) == n
        assert "members" not in entries["tencent"]


def test_a_purge_through_a_pool_is_followed_to_its_end_on_every_member(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The pool as one provider (its own purge, as a caller of the contract uses it).

    One request is a task on each member under one id; its status is one entry per
    URL, done once done on every member, so following it ends as for one account.
    """
    from cdn_preheat import purge as purging
    from cdn_preheat.providers.base import TaskState

    run = Run(sandbox, tmp_path, ACCOUNTS, pools=dict.fromkeys(ACCOUNTS, "p"))
    urls = edge(sandbox, "demo-8")[:3]
    used = {name: purged_urls(sandbox, name) for name in ACCOUNTS}
    [unit] = units = run.units()
    ledger = run.ledger()
    try:
        assert isinstance(unit.provider, PoolProvider)
        options = purging.PurgeOptions(wait=True, timeout=30.0, poll_interval=0.2)
        report = purging.purge(ledger, unit.provider, urls, [], options=options)
        assert not report.timed_out, report
        assert (report.submitted, report.done, report.failed, report.processing) == (3, 3, 0, 0)
        [task] = report.tasks
        assert ledger.open_tasks("p", "pool", purging.TASK_KIND) == []  # closed once followed
        entries = unit.provider.purge_status([task])
        assert sorted(e.url for e in entries) == sorted(urls)
        assert {(e.task_id, e.state) for e in entries} == {(task, TaskState.DONE)}
    finally:
        ledger.close()
        close_units(units)
    for name in ACCOUNTS:  # each member purged them (a URL is done once done on both)
        assert purged_urls(sandbox, name) > used[name], name


def test_a_pools_purge_entry_is_done_once_done_on_every_member() -> None:
    """The rule of PoolProvider.purge_status for one URL, member entries by member entries."""
    from cdn_preheat.providers.base import TaskEntry, TaskState
    from cdn_preheat.targets import _pooled_entry

    url, task = "https://cdn.example.com/a.ts", "b/1|c/2"

    def entry(member: str, state: TaskState, reason: str | None = None) -> TaskEntry:
        return TaskEntry(f"{member}/x", url, state, reason)

    done, processing = TaskState.DONE, TaskState.PROCESSING
    merged = _pooled_entry(task, url, [entry("b", done), entry("c", done)], 2)
    assert (merged.task_id, merged.url, merged.state, merged.reason) == (task, url, done, None)
    assert _pooled_entry(task, url, [entry("b", done)], 2).state is processing  # c: not yet
    assert _pooled_entry(task, url, [entry("b", done), entry("c", processing)], 2).state is (
        processing
    )
    failed = _pooled_entry(
        task, url, [entry("b", done), entry("c", TaskState.FAILED, "origin timeout")], 2
    )
    assert (failed.state, failed.reason) == (TaskState.FAILED, "origin timeout")
