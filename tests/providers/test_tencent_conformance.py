"""Tencent Cloud behaviours of real accounts that the emulator models on request.

Each test sets the emulator to a documented behaviour (see the comments in
``sandbox/tencent.py`` for the sources) and checks what the provider makes of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_env import settings_from

from cdn_preheat.errors import AreaMismatch, BatchRefused, DomainError, PermissionDenied
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.sandbox.tencent import TencentLimits


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(videos=2, segments=5, tencent_limits=TencentLimits(task_delay=0)) as box:
        yield box


def provider(box: Sandbox, **overrides: str) -> TencentProvider:
    return TencentProvider(settings_from({**box.client_env(), **overrides}))


def limits(box: Sandbox, **changes: object) -> None:
    box.tencent.limits = dataclasses.replace(box.tencent.limits, **changes)


def segment(box: Sandbox, i: int = 0) -> str:
    return box.edge_url(f"/vod/demo-1/v0/seg{i}.ts")


# -- error codes ----------------------------------------------------------------------


def test_url_too_long_refuses_the_batch_for_the_scheduler_to_isolate(sandbox: Sandbox) -> None:
    limits(sandbox, max_url_length=200)
    long_url = sandbox.edge_url("/vod/demo-1/v0/seg0.ts?" + "x" * 300)
    with pytest.raises(BatchRefused) as caught:
        provider(sandbox).submit([segment(sandbox), long_url])
    assert caught.value.code == "InvalidParameter.CdnUrlExceedLength"
    assert not caught.value.per_host
    # Alone, the short URL goes through: only the long one is refused.
    assert provider(sandbox).submit([segment(sandbox)]).accepted == (segment(sandbox),)


def test_missing_cam_policy_names_the_action(sandbox: Sandbox) -> None:
    limits(sandbox, cam_denied=frozenset({"PushUrlsCache"}))
    cdn = provider(sandbox)
    with pytest.raises(PermissionDenied) as caught:
        cdn.submit([segment(sandbox)])
    assert caught.value.code == "UnauthorizedOperation.CdnCamUnauthorized"
    assert "cdn:PushUrlsCache" in str(caught.value)
    assert cdn.quota().available is not None  # other actions stay allowed
    limits(sandbox, cam_denied=frozenset({"DescribePushQuota"}))
    with pytest.raises(PermissionDenied, match="cdn:DescribePushQuota"):
        cdn.quota()


def test_domain_not_granted_to_the_sub_account(sandbox: Sandbox) -> None:
    limits(sandbox, host_unauthorized=True)
    with pytest.raises(PermissionDenied) as caught:
        provider(sandbox).submit([segment(sandbox)])
    assert caught.value.code == "UnauthorizedOperation.CdnHostUnauthorized"
    assert sandbox.edge.netloc in str(caught.value) and "CAM" in str(caught.value)


def test_domain_moved_to_edgeone_is_named_as_a_possibility(sandbox: Sandbox) -> None:
    limits(sandbox, moved_to_edgeone=True)
    with pytest.raises(DomainError) as caught:
        provider(sandbox).submit([segment(sandbox)])
    message = str(caught.value)
    assert caught.value.code == "ResourceNotFound.CdnHostNotExists"
    assert "EdgeOne" in message and "CDN_HOST" in message and "CDN_PROVIDER" in message
    # The setting that reaches a migrated domain: EdgeOne's own provider and its zone.
    assert "CDN_PROVIDER=edgeone" in message and "EO_ZONE_ID" in message


def test_domain_already_on_edgeone_names_the_edgeone_settings(sandbox: Sandbox) -> None:
    """InvalidParameter.CdnHostExistsInEdgeOne ("域名已在Edgeone接入", cdn errorcodes.py)."""
    sandbox.tencent.inject("InvalidParameter.CdnHostExistsInEdgeOne")
    with pytest.raises(DomainError) as caught:
        provider(sandbox).submit([segment(sandbox)])
    message = str(caught.value)
    assert caught.value.code == "InvalidParameter.CdnHostExistsInEdgeOne"
    assert "CDN_PROVIDER=edgeone" in message and "EO_ZONE_ID" in message
    assert sandbox.tencent.received_urls() == []


def test_a_domain_on_cdn_gets_no_edgeone_hint(sandbox: Sandbox) -> None:
    sandbox.tencent.domain_status = "offline"
    with pytest.raises(DomainError) as caught:
        provider(sandbox).submit([segment(sandbox)])
    assert caught.value.code == "ResourceUnavailable.CdnHostIsNotOnline"
    assert "EdgeOne" not in str(caught.value)


# -- areas ----------------------------------------------------------------------------


def test_one_area_account_reports_only_its_area(sandbox: Sandbox) -> None:
    limits(sandbox, areas=("mainland",))
    quota = provider(sandbox).quota()
    assert (quota.area, quota.total) == ("mainland", 100_000)
    with pytest.raises(AreaMismatch, match="TENCENT_AREA=mainland") as caught:
        provider(sandbox, TENCENT_AREA="overseas").quota()
    assert caught.value.exit_code == 2
    with pytest.raises(AreaMismatch, match="TENCENT_AREA=mainland"):
        provider(sandbox, TENCENT_AREA="global").quota()


@pytest.mark.parametrize(
    "code", ["InvalidParameter.CdnParamError", "InvalidParameter.CdnHostInvalidParam"]
)
@pytest.mark.parametrize(
    ("served", "configured", "advice"),
    [
        (("mainland",), "overseas", "TENCENT_AREA=mainland"),
        (("overseas",), "mainland", "TENCENT_AREA=overseas"),
        (("mainland",), "global", "TENCENT_AREA=mainland"),
        (("overseas",), "global", "TENCENT_AREA=overseas"),
    ],
)
def test_push_to_an_area_the_domain_is_not_in_says_which_to_set(
    sandbox: Sandbox, code: str, served: tuple[str, ...], configured: str, advice: str
) -> None:
    limits(sandbox, areas=served, area_refusal_code=code)
    with pytest.raises(AreaMismatch) as caught:
        provider(sandbox, TENCENT_AREA=configured).submit([segment(sandbox)])
    assert caught.value.code == code
    assert advice in str(caught.value) and caught.value.exit_code == 2
    assert sandbox.tencent.received() == []
    assert sandbox.tencent.quota_used("mainland") == sandbox.tencent.quota_used("overseas") == 0


def test_global_push_on_a_two_area_account_charges_both(sandbox: Sandbox) -> None:
    cdn = provider(sandbox, TENCENT_AREA="global")
    cdn.submit([segment(sandbox, i) for i in range(3)])
    assert sandbox.tencent.quota_used("mainland") == sandbox.tencent.quota_used("overseas") == 3
    provider(sandbox, TENCENT_AREA="overseas").submit([segment(sandbox, 4)])
    quota = cdn.quota()
    assert (quota.area, quota.available) == ("global", 100_000 - 4)


def test_cli_push_to_the_wrong_area_is_one_sentence_and_exit_2(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    import subprocess
    import sys

    limits(sandbox, areas=("overseas",))
    env = {
        "PATH": "/usr/bin:/bin",
        "CDN_PREHEAT_DB": str(tmp_path / "ledger.sqlite3"),
        **sandbox.client_env("tencent"),
        "TENCENT_AREA": "mainland",
    }
    run = subprocess.run(
        [sys.executable, "-m", "cdn_preheat", "push", "demo-1", sandbox.video_url("demo-1")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 2, run.stderr
    assert "TENCENT_AREA=overseas" in run.stderr
    assert "Traceback" not in run.stderr
