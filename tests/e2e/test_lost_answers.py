"""Lost answers on every emulated vendor: the request ran, the answer never came.

Every emulator is served by one base (sandbox/core.py ``EmulatorBase``) that
applies the sandbox's faults the same way, so a push carried out and then hung
up on reaches Tencent, Alibaba, Qiniu and EdgeOne alike. The scheduler must then
ask the vendor's own task list (Tencent DescribePushTasks, Alibaba
DescribeRefreshTasks, Qiniu /v2/tune/prefetch/list, EdgeOne DescribePrefetchTasks)
instead of pushing again: each URL reaches the CDN exactly once and ends done.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import duplicates

from cdn_preheat import pipeline
from cdn_preheat.app import expand_options, run_options
from cdn_preheat.config import Settings
from cdn_preheat.hls import expand
from cdn_preheat.ledger.base import UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.providers import emulated_names, make_provider
from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.server import Sandbox

# A third of every API call's answers are lost (pushes, status polls, task lists).
FAULTS = Faults(lost_answer=0.3, seed=4)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # One sandbox for every vendor: each test uses its own video, so received URLs
    # and task lists do not mix.
    videos = len(emulated_names())
    with Sandbox(videos=videos, variants=1, segments=8, task_delay=0.1, faults=FAULTS) as box:
        yield box


@pytest.mark.parametrize("kind", emulated_names())
def test_a_push_whose_answer_was_lost_is_found_not_pushed_again(
    sandbox: Sandbox, kind: str, tmp_path: Path
) -> None:
    video = f"demo-{emulated_names().index(kind) + 1}"
    env = {k.lower(): v for k, v in sandbox.client_env(kind).items()}
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **env,
        cdn_preheat_db=str(tmp_path / "ledger.sqlite3"),
        cdn_preheat_batch_size=3,
        cdn_preheat_max_attempts=1,  # a URL pushed twice would be a failed reconciliation
    )
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    provider = make_provider(settings)
    api = sandbox.apis[kind]
    # Each vendor's own draws: how many calls another vendor's test made (fewer, once
    # Alibaba looked lost pushes up by one URL) must not decide whether this one loses any.
    sandbox.faults._random.seed(f"{FAULTS.seed}-{kind}")
    try:
        expansion = expand(sandbox.video_url(video), expand_options(settings))
        pipeline.queue_expansion(
            ledger, provider.name, provider.area, video, expansion,
            head_first=None, max_age=settings.cdn_preheat_max_age,
        )  # fmt: skip
        before = len(api.received_urls())
        report = pipeline.run_queue(ledger, provider, run_options(settings, poll_interval=0.05))
        received = api.received_urls()[before:]
        records = ledger.url_records(video)
    finally:
        provider.close()
        ledger.close()

    outcomes = getattr(api, "outcomes", None) or getattr(api, "counters", {})
    lost = outcomes.get("lost_answer", 0) + outcomes.get("fault:lost_answer", 0)
    assert lost > 0, outcomes  # answers were lost on this vendor
    assert report.stopped_by is None
    assert records and sorted(received) == sorted(record.url for record in records)
    assert duplicates(received) == {}  # every lost push was found in the task list
    assert {record.state for record in records} == {UrlState.DONE}


def test_alibaba_merged_task_ids_each_url_reaches_the_cdn_once(tmp_path: Path) -> None:
    """Pushes of one second share one PushTaskId (SDK, PushObjectCacheResponseBody).

    A lost push's id is then recorded first by another batch's answer: it is still
    this batch's push, found in the task list, not pushed again.
    """
    from cdn_preheat.sandbox.aliyun import AliyunLimits

    limits = AliyunLimits(task_delay=0.1, merge_task_ids=True)
    faults = Faults(lost_answer=0.3, seed=4)
    with Sandbox(videos=1, variants=1, segments=24, aliyun_limits=limits, faults=faults) as box:
        env = {k.lower(): v for k, v in box.client_env("aliyun").items()}
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            **env,
            cdn_preheat_db=str(tmp_path / "ledger.sqlite3"),
            cdn_preheat_batch_size=3,
            cdn_preheat_max_attempts=1,
        )
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        provider = make_provider(settings)
        api = box.apis["aliyun"]
        try:
            expansion = expand(box.video_url("demo-1"), expand_options(settings))
            pipeline.queue_expansion(
                ledger, provider.name, provider.area, "demo-1", expansion,
                head_first=None, max_age=settings.cdn_preheat_max_age,
            )  # fmt: skip
            report = pipeline.run_queue(ledger, provider, run_options(settings, poll_interval=0.05))
            received = api.received_urls()
            records = ledger.url_records("demo-1")
            shared = [call.task_id for call in api.received if call.action == "PushObjectCache"]
        finally:
            provider.close()
            ledger.close()

    assert api.counters.get("fault:lost_answer", 0) + api.counters.get("lost_answer", 0) > 0
    assert len(shared) > len(set(shared))  # some pushes did share an id
    assert report.stopped_by is None
    assert records and sorted(received) == sorted(record.url for record in records)
    assert duplicates(received) == {}
    assert {record.state for record in records} == {UrlState.DONE}


@pytest.mark.parametrize(
    "faults",
    [
        # The request takes effect at once; the answer comes after the client's deadline.
        Faults(late_answer=0.3, slow_seconds=1.0, seed=3),
        # The request reaches the API and takes effect only after the client's deadline.
        Faults(slow=0.3, slow_seconds=0.7, seed=5),
    ],
    ids=["late-answer", "late-effect"],
)
def test_alibaba_a_timed_out_push_is_looked_up_before_it_is_pushed_again(
    tmp_path: Path, faults: Faults
) -> None:
    """Issue 10 item 6 on Alibaba: its calls keep to CDN_PREHEAT_API_TIMEOUT, and a push
    that timed out is given one more deadline to take effect, then looked up
    (find_request) before its URLs go again: each URL reaches the CDN once."""
    from cdn_preheat.sandbox.aliyun import AliyunLimits

    limits = AliyunLimits(task_delay=0.1)
    with Sandbox(videos=1, variants=1, segments=25, aliyun_limits=limits, faults=faults) as box:
        env = {k.lower(): v for k, v in box.client_env("aliyun").items()}
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            **env,
            cdn_preheat_db=str(tmp_path / "ledger.sqlite3"),
            cdn_preheat_batch_size=3,
            cdn_preheat_api_timeout=0.4,
        )
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        provider = make_provider(settings)
        api = box.apis["aliyun"]
        try:
            expansion = expand(box.video_url("demo-1"), expand_options(settings))
            pipeline.queue_expansion(
                ledger, provider.name, provider.area, "demo-1", expansion,
                head_first=None, max_age=settings.cdn_preheat_max_age,
            )  # fmt: skip
            report = pipeline.run_queue(ledger, provider, run_options(settings, poll_interval=0.05))
            received = api.received_urls()
            records = ledger.url_records("demo-1")
        finally:
            provider.close()
            ledger.close()

    assert report.transient > 0  # calls did time out
    assert report.stopped_by is None
    assert records and sorted(received) == sorted(record.url for record in records)
    assert duplicates(received) == {}
    assert {record.state for record in records} == {UrlState.DONE}
