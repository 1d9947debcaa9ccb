"""Status polling and recovery on Alibaba Cloud, Qiniu and EdgeOne: few calls, pages retried alone.

Against each vendor's emulator over real HTTP. The figures asserted are the
emulator's counts of calls (and of calls refused for rate), never how long
anything took. Tencent's are in tests/test_tracker_polling.py.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from contract_env import settings_from

from cdn_preheat.ledger.base import QueuedUrl, UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.pipeline import RunOptions, run_queue
from cdn_preheat.providers import make_provider
from cdn_preheat.providers.aliyun import AliyunProvider
from cdn_preheat.providers.base import Provider, TaskState
from cdn_preheat.providers.edgeone import EdgeOneProvider
from cdn_preheat.providers.qiniu import QiniuProvider
from cdn_preheat.sandbox.aliyun import AliyunLimits
from cdn_preheat.sandbox.core import RATE_COUNTINGS, RateCounting
from cdn_preheat.sandbox.edgeone import EdgeOneLimits
from cdn_preheat.sandbox.qiniu import QiniuLimits
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.scheduler import SchedulerOptions
from cdn_preheat.tracker import Tracker, TrackerOptions

SEGMENTS = 2600
QINIU_LIST = "/v2/tune/prefetch/list"


def sandbox(**limits: Any) -> Sandbox:
    # The origin has every URL queued: a prefetch of a missing file ends failed or
    # invalid and is pushed again, which would count other calls than these tests'.
    return Sandbox(videos=1, variants=1, segments=SEGMENTS, task_delay=0.2, **limits)


@pytest.fixture
def box(rate_counting: RateCounting) -> Iterator[Sandbox]:
    with sandbox(
        rate_counting=rate_counting,
        qiniu_limits=QiniuLimits(prefetch_quota=100_000, list_calls_per_second=10),
        aliyun_limits=AliyunLimits(),
        edgeone_limits=EdgeOneLimits(),
    ) as running:
        yield running


def provider_for(box: Sandbox, vendor: str) -> Provider:
    return make_provider(settings_from(box.client_env(vendor)))


def queue(box: Sandbox, ledger: SqliteLedger, provider: Provider, count: int) -> list[str]:
    urls = [box.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(count)]
    items = [QueuedUrl(url, "segment") for url in urls]
    now = dt.datetime.now(dt.UTC)
    ledger.enqueue("v", provider.name, provider.area, items, now, dt.timedelta(days=1))
    return urls


def all_done(ledger: SqliteLedger, count: int) -> bool:
    counts = ledger.counts()
    return counts.get(UrlState.DONE, 0) == count and sum(counts.values()) == count


# -- Qiniu: the prefetch query by startTime/endTime ------------------------------


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_qiniu_polling_asks_by_time_window_at_most_one_call_per_500_urls(
    box: Sandbox, tmp_path: Path
) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    provider = provider_for(box, "qiniu")
    queue(box, ledger, provider, 2000)
    report = run_queue(ledger, provider, RunOptions())
    assert report.submitted == 2000
    assert all_done(ledger, 2000)
    assert box.qiniu.calls["/v2/tune/prefetch"] == 100  # 20 URLs a request
    # 100 requests; asked one by one, each round would cost 100 calls.
    assert box.qiniu.calls[QINIU_LIST] <= math.ceil(2000 / 500)
    assert box.qiniu.rate_refusals == {}


def test_qiniu_one_round_over_finished_tasks_costs_a_call_per_page(
    box: Sandbox, tmp_path: Path
) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    provider = provider_for(box, "qiniu")
    queue(box, ledger, provider, 2500)
    run_queue(ledger, provider, RunOptions(wait=False))
    box.clock.advance(dt.timedelta(seconds=1))  # every task over
    tracked = Tracker(ledger, provider, TrackerOptions(poll_interval=0.1)).poll_once()
    assert tracked.done == 2500
    assert not ledger.open_tasks("qiniu", "global")
    # 125 tasks of 20 URLs, read in pages of 1,000.
    assert box.qiniu.calls[QINIU_LIST] == 3


@pytest.mark.parametrize("over_max", ["cap", "refuse"])
def test_qiniu_window_reads_every_task_whatever_page_size_qiniu_allows(
    tmp_path: Path, over_max: str
) -> None:
    """No maximum pageSize is documented: Qiniu may cap a larger one, or refuse it."""
    limits = QiniuLimits(prefetch_quota=10_000, list_page_max=100, list_page_over_max=over_max)  # type: ignore[arg-type]
    with sandbox(qiniu_limits=limits) as running:
        provider = provider_for(running, "qiniu")
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
        sent = [running.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(250)]
        for first in range(0, len(sent), 20):
            provider.submit(sent[first : first + 20])
        entries = provider.window_status(since, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2))
        assert entries is not None
        assert sorted(e.url for e in entries) == sorted(sent)
        refused = 1 if over_max == "refuse" else 0
        assert running.qiniu.calls[QINIU_LIST] == 3 + refused  # 100 + 100 + 50
        if over_max == "refuse":  # the default size from then on
            provider.window_status(since, dt.datetime.now(dt.UTC))
            assert running.qiniu.calls[QINIU_LIST] == 4 + 3


@pytest.mark.parametrize("precision", ["second", "instant", "day"])
def test_qiniu_every_url_is_followed_to_done_however_the_window_is_compared(
    tmp_path: Path, precision: str
) -> None:
    """Whether startTime/endTime compare with createAt's second, the instant or the day."""
    limits = QiniuLimits(prefetch_quota=10_000, list_time_precision=precision)  # type: ignore[arg-type]
    with sandbox(qiniu_limits=limits) as running:
        ledger = SqliteLedger(tmp_path / "ledger.db")
        provider = provider_for(running, "qiniu")
        queue(running, ledger, provider, 400)
        report = run_queue(ledger, provider, RunOptions())
        assert report.submitted == 400
        assert all_done(ledger, 400)
        assert not ledger.open_tasks("qiniu", "global")


def test_qiniu_reconciliation_retries_a_failed_query_alone_not_the_whole_scan(
    box: Sandbox,
) -> None:
    provider = provider_for(box, "qiniu")
    assert isinstance(provider, QiniuProvider)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    sent = [box.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(250)]
    for first in range(0, len(sent), 20):
        provider.submit(sent[first : first + 20])
    real = provider._post
    queries: list[int] = []  # which 100 URLs each query asked for

    def second_query_fails_once(path: str, request: dict[str, Any]) -> Any:
        queries.append(sent.index(request["urls"][0]) // 100)
        if queries == [0, 1]:
            box.qiniu.inject(403024)  # "request too frequently"
        return real(path, request)

    provider._post = second_query_fails_once  # type: ignore[method-assign]
    found = provider.find_submitted(sent, since)  # 100 URLs a query
    assert set(found) == set(sent)
    assert queries == [0, 1, 1, 2]  # the second again, the first not


def test_qiniu_a_failed_page_of_a_window_is_asked_again_alone(tmp_path: Path) -> None:
    limits = QiniuLimits(prefetch_quota=10_000, list_page_max=100)
    with sandbox(qiniu_limits=limits) as running:
        provider = provider_for(running, "qiniu")
        assert isinstance(provider, QiniuProvider)
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
        sent = [running.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(250)]
        for first in range(0, len(sent), 20):
            provider.submit(sent[first : first + 20])
        real = provider._post
        pages: list[int] = []

        def second_page_fails_once(path: str, request: dict[str, Any]) -> Any:
            pages.append(request["pageNo"])
            if request["pageNo"] == 1 and pages.count(1) == 1:
                running.qiniu.inject(500000)  # internal error
            return real(path, request)

        provider._post = second_page_fails_once  # type: ignore[method-assign]
        entries = provider.window_status(since, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2))
        assert sorted(e.url for e in entries) == sorted(sent)
        assert pages == [0, 1, 1, 2]  # page 2 again, page 1 not


# -- Alibaba Cloud: DescribeRefreshTaskById, 10 task ids a call --------------------


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_aliyun_polling_asks_at_most_one_call_per_500_urls(box: Sandbox, tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    provider = provider_for(box, "aliyun")
    queue(box, ledger, provider, 2000)
    report = run_queue(ledger, provider, RunOptions())
    assert report.submitted == 2000
    assert all_done(ledger, 2000)
    calls = box.aliyun.action_calls
    assert calls["PushObjectCache"] == 20  # 100 URLs a request
    # 20 tasks of 100 URLs, 10 ids a call: one by one, each round would cost 20 calls.
    assert calls["DescribeRefreshTaskById"] <= math.ceil(2000 / 500)
    assert calls.get("DescribeRefreshTasks", 0) == 0  # no answer was lost
    assert box.aliyun.rate_refusals == {}


def test_aliyun_a_failed_status_request_is_retried_alone(box: Sandbox) -> None:
    provider = provider_for(box, "aliyun")
    sent = [box.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(20)]
    tasks = [provider.submit([url]).task_id for url in sent]
    box.clock.advance(dt.timedelta(seconds=1))
    real = provider._client.describe_refresh_task_by_id_with_options  # type: ignore[attr-defined]
    asked: list[str] = []

    def second_request_fails_once(request: Any, runtime: Any) -> Any:
        asked.append(request.task_id)
        if len(asked) == 2:
            box.aliyun.inject("Throttling.User", "DescribeRefreshTaskById")
        return real(request, runtime)

    provider._client.describe_refresh_task_by_id_with_options = second_request_fails_once  # type: ignore[attr-defined]
    entries = provider.task_status(tasks)
    assert sorted(e.url for e in entries) == sorted(sent)
    assert all(e.state is TaskState.DONE for e in entries)
    assert asked == [asked[0], asked[1], asked[1]]  # the second 10 again, the first 10 not
    assert box.aliyun.action_calls["DescribeRefreshTaskById"] == 3


def test_aliyun_a_failed_page_of_describe_refresh_tasks_is_retried_alone(box: Sandbox) -> None:
    provider = provider_for(box, "aliyun")
    assert isinstance(provider, AliyunProvider)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    sent = [box.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(250)]
    for first in range(0, len(sent), 100):
        provider.submit(sent[first : first + 100])
    real = provider._client.describe_refresh_tasks_with_options
    pages: list[int] = []

    def second_page_fails_once(request: Any, runtime: Any) -> Any:
        pages.append(request.page_number)
        if request.page_number == 2 and pages.count(2) == 1:
            box.aliyun.inject("InternalError", "DescribeRefreshTasks")
        return real(request, runtime)

    provider._client.describe_refresh_tasks_with_options = second_page_fails_once  # type: ignore[method-assign]
    found = provider.find_submitted(sent, since)
    assert set(found) == set(sent)
    assert pages == [1, 2, 2, 3]  # page 2 again, page 1 not


# -- EdgeOne: DescribePrefetchTasks by StartTime/EndTime ---------------------------


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_edgeone_polling_asks_at_most_one_call_per_500_urls(box: Sandbox, tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    provider = provider_for(box, "edgeone")
    queue(box, ledger, provider, 2000)
    # Tasks of 500 URLs, as Tencent's: a window still covers several.
    options = RunOptions(scheduler=SchedulerOptions(batch_size=500))
    report = run_queue(ledger, provider, options)
    assert report.submitted == 2000
    assert all_done(ledger, 2000)
    assert box.edgeone.actions["CreatePrefetchTask"] == 4
    assert box.edgeone.actions["DescribePrefetchTasks"] <= math.ceil(2000 / 500)
    assert box.edgeone.rate_refusals == {}


def test_edgeone_a_failed_page_is_retried_alone_not_the_whole_scan(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdn_preheat.providers import edgeone as edgeone_module

    monkeypatch.setattr(edgeone_module, "PAGE_SIZE", 100)
    provider = provider_for(box, "edgeone")
    assert isinstance(provider, EdgeOneProvider)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    sent = [box.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(250)]
    provider.submit(sent)
    real = provider._client.DescribePrefetchTasks
    offsets: list[int] = []

    def second_page_fails_once(request: Any) -> Any:
        offsets.append(request.Offset)
        if request.Offset == 100 and offsets.count(100) == 1:
            box.edgeone.inject("LimitExceeded.RateLimitExceeded")
        return real(request)

    provider._client.DescribePrefetchTasks = second_page_fails_once  # type: ignore[method-assign]
    found = provider.find_submitted(sent, since)
    assert set(found) == set(sent)
    assert offsets == [0, 100, 100, 200]  # page 2 again, page 1 not


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_edgeone_status_polling_keeps_to_describe_prefetch_tasks_20_a_second(
    box: Sandbox,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    provider = provider_for(box, "edgeone")
    task = provider.submit([box.edge_url("/vod/demo-1/v0/seg0.ts")]).task_id
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: provider.task_status([task]), range(50)))
    assert box.edgeone.actions["DescribePrefetchTasks"] == 50
    assert box.edgeone.rate_refusals == {}


def test_edgeone_a_window_that_ends_before_it_starts_is_empty_and_costs_no_call(
    box: Sandbox,
) -> None:
    """EdgeOne refuses an EndTime before StartTime (InvalidParameter.ParameterError)."""
    provider = provider_for(box, "edgeone")
    provider.submit([box.edge_url("/vod/demo-1/v0/seg0.ts")])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert provider.window_status(now, now - dt.timedelta(seconds=1)) == []
    assert box.edgeone.actions["DescribePrefetchTasks"] == 0


def test_aliyun_tasks_merged_by_the_second_are_followed_to_done(tmp_path: Path) -> None:
    """Alibaba merges the prefetches of one domain and second into one id per 500 URLs."""
    limits = AliyunLimits(merge_task_ids=True)
    with sandbox(aliyun_limits=limits) as running:
        ledger = SqliteLedger(tmp_path / "ledger.db")
        provider = provider_for(running, "aliyun")
        queue(running, ledger, provider, 2000)
        report = run_queue(ledger, provider, RunOptions())
        assert report.submitted == 2000
        assert all_done(ledger, 2000)
        assert not ledger.open_tasks("aliyun", provider.area)
        calls = running.aliyun.action_calls
        assert calls["PushObjectCache"] == 20
        task_ids = {call.task_id for call in running.aliyun.received}
        # 20 pushes at 50 a second land in a few seconds: ids were shared.
        assert len({part for ids in task_ids for part in ids.split(",")}) < 20
        assert calls["DescribeRefreshTaskById"] <= math.ceil(2000 / 500)
        assert running.aliyun.rate_refusals == {}


@pytest.mark.parametrize("vendor", ["aliyun", "qiniu", "edgeone"])
def test_every_url_ends_done_through_lost_answers_on_every_api(tmp_path: Path, vendor: str) -> None:
    """A fifth of all answers lost, status and task-list pages included: a lost page of a
    reconciliation is asked again alone, so the lost pushes are found and nothing stays
    reserved."""
    from cdn_preheat.sandbox.core import Faults

    faults = Faults(lost_answer=0.2, seed=3)
    limits = {
        "aliyun_limits": AliyunLimits(),
        "qiniu_limits": QiniuLimits(prefetch_quota=100_000),
        "edgeone_limits": EdgeOneLimits(),
    }
    with sandbox(faults=faults, **limits) as running:
        ledger = SqliteLedger(tmp_path / "ledger.db")
        provider = provider_for(running, vendor)
        queue(running, ledger, provider, 1000)
        run_queue(ledger, provider, RunOptions())
        faults.lost_answer = 0.0
        run_queue(ledger, provider, RunOptions())  # what the faults left
        assert all_done(ledger, 1000)
        assert set(running.apis[vendor].received_urls()) == {
            running.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(1000)
        }


# -- Alibaba Cloud: recovery of a push whose answer was lost -----------------------


@pytest.mark.parametrize("merge_task_ids", [False, True])
def test_aliyun_a_lost_push_is_looked_up_by_one_url_not_by_reading_the_task_list(
    tmp_path: Path, merge_task_ids: bool
) -> None:
    """Issue 10 item 5: recovery asks what one lost request needs, not the whole list.

    A tenth of the answers lost and a tenth of the connections dropped, on every
    API. Each push without an answer is looked up by its first URL
    (DescribeRefreshTasks with ObjectPath, an exact match) and, when that URL has a
    task, the URLs of that task by id (DescribeRefreshTaskById); a call that itself
    draws a fault is asked again. So DescribeRefreshTasks is called at most once per
    fault drawn (twice with merged ids, where a push may straddle two ids). Before,
    each push without an answer read every page of the task list since its claim (20
    pages once 2,000 URLs were pushed) or asked per URL, whichever was fewer.
    """
    from collections import Counter

    from cdn_preheat.sandbox.core import Faults

    faults = Faults(lost_answer=0.1, drop=0.1, seed=5)
    limits = AliyunLimits(merge_task_ids=merge_task_ids)
    with sandbox(faults=faults, aliyun_limits=limits) as running:
        ledger = SqliteLedger(tmp_path / "ledger.db")
        provider = provider_for(running, "aliyun")
        queue(running, ledger, provider, 2000)
        run_queue(ledger, provider, RunOptions())
        faults.lost_answer = faults.drop = 0.0
        run_queue(ledger, provider, RunOptions())  # what the faults left
        api = running.aliyun
        assert all_done(ledger, 2000)
        pushed = Counter(api.received_urls())
        assert len(pushed) == 2000 and set(pushed.values()) == {1}  # each URL pushed once
        counters = api.counters
        faulted = counters.get("fault:lost_answer", 0) + counters.get("fault:drop", 0)
        assert faulted > 0, counters
        lookups = api.action_calls.get("DescribeRefreshTasks", 0)
        assert lookups <= (2 if merge_task_ids else 1) * faulted, (lookups, faulted)
        assert api.rate_refusals == {}
