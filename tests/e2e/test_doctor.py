"""`cdn-preheat doctor` against the sandbox: every check passes, then each one fails alone.

The emulators answer the read-only calls doctor makes (Tencent DescribePushQuota and
DescribeDomains, Alibaba DescribeRefreshQuota and DescribeUserDomains, Qiniu's prefetch
list and domain API) with each vendor's documented fields, and stamp their Date header
with the sandbox's API clock (``clock.wall_skew``), which also decides signature expiry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clirun import Cli, Run, base_env

from cdn_preheat.sandbox.server import Sandbox

CHECKS = ["credentials", "domain", "quota", "origin", "clock"]


def _lines(run: Run) -> dict[str, str]:
    """check name -> its line, from the one-line-per-check output."""
    lines = {}
    for line in run.stdout.splitlines():
        mark, rest = line.split(" ", 1)
        name = rest.split(":", 1)[0]
        lines[name] = line
        assert mark in ("✓", "✗", "-"), line
    return lines


def test_every_check_passes_on_a_healthy_account_and_no_quota_is_spent(cli: Cli) -> None:
    run = cli("doctor", "--sample-url", cli.sandbox.video_url("demo-1"))
    assert run.code == 0, run.stdout + run.stderr
    lines = _lines(run)
    assert list(lines) == CHECKS
    assert all(line.startswith("✓") for line in lines.values()), run.stdout
    assert "99,9" not in lines["quota"]  # nothing was pushed to learn the quota
    assert "100,000 of 100,000 URLs left today" in lines["quota"]
    assert cli.sandbox.tencent.received_urls() == []
    assert "online" in lines["domain"]

    data = cli("doctor", "--json").json()
    assert data["ok"] is True
    assert [c["name"] for c in data["checks"]] == CHECKS
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["origin"]["ok"] is None  # no --sample-url: not asked, not failed
    assert by_name["quota"]["batch"] == 500
    assert abs(by_name["clock"]["skew_seconds"]) < 60


def test_a_wrong_key_fails_the_credentials_line(cli: Cli) -> None:
    run = cli("doctor", extra_env={"TENCENT_SECRET_KEY": "not-the-key"})
    assert run.code == 1
    lines = _lines(run)
    assert lines["credentials"].startswith("✗")
    assert "TENCENT_SECRET_KEY" in lines["credentials"]
    assert "not-the-key" not in run.stdout + run.stderr
    assert lines["domain"].startswith("-") and lines["quota"].startswith("-")
    assert lines["clock"].startswith("✓")


def test_an_unknown_domain_fails_the_domain_line(cli: Cli) -> None:
    run = cli("doctor", extra_env={"CDN_HOST": "other.example.com"})
    assert run.code == 1
    lines = _lines(run)
    assert lines["credentials"].startswith("✓")
    assert lines["domain"].startswith("✗")
    assert "other.example.com is not a CDN domain" in lines["domain"]


def test_an_offline_domain_fails_the_domain_line(cli: Cli) -> None:
    cli.sandbox.tencent.domain_status = "offline"
    run = cli("doctor", "--json")
    assert run.code == 1
    domain = {c["name"]: c for c in run.json()["checks"]}["domain"]
    assert (domain["ok"], domain["status"]) == (False, "offline")
    assert "not online" in domain["message"]


def test_a_domain_served_elsewhere_names_the_area_to_set(cli: Cli) -> None:
    run = cli("doctor", extra_env={"TENCENT_AREA": "overseas"})
    lines = _lines(run)
    # The sandbox account has both areas, so the quota is fine; its domain is global.
    assert run.code == 0, run.stdout
    assert "accelerated in global" in lines["domain"]


def test_a_skewed_clock_fails_the_clock_line_and_explains_the_refused_signature(
    cli: Cli,
) -> None:
    cli.sandbox.clock.wall_skew = 600.0  # the API's clock is 10 minutes ahead of ours
    run = cli("doctor")
    assert run.code == 1
    lines = _lines(run)
    assert lines["clock"].startswith("✗")
    assert "behind" in lines["clock"] and "5 minutes" in lines["clock"]
    assert lines["credentials"].startswith("✗")
    assert "SignatureExpire" in lines["credentials"]
    assert "clock is off" in lines["credentials"]

    cli.sandbox.clock.wall_skew = 120.0  # within what TC3 allows
    within = cli("doctor", "--json").json()
    clock = {c["name"]: c for c in within["checks"]}["clock"]
    assert clock["ok"] is True and 100 < clock["skew_seconds"] < 140
    assert within["ok"] is True


def test_an_origin_that_does_not_answer_the_sample_fails_the_origin_line(cli: Cli) -> None:
    missing = cli.sandbox.video_url("demo-1").replace("demo-1", "demo-99")
    run = cli("doctor", "--sample-url", missing)
    assert run.code == 1
    assert _lines(run)["origin"].startswith("✗")


@pytest.fixture
def vendor_cli(tmp_path: Path) -> Iterator[Callable[[str], Cli]]:
    boxes: list[Sandbox] = []

    def make(vendor: str) -> Cli:
        box = Sandbox(videos=1, segments=3, edge_vendor=vendor).start()  # type: ignore[arg-type]
        boxes.append(box)
        workdir = tmp_path / vendor
        workdir.mkdir()
        return Cli(box, workdir, {**base_env(workdir), **box.client_env(vendor)})

    yield make
    for box in boxes:
        box.stop()


def test_alibaba_checks_pass_then_an_offline_domain_and_a_wrong_area_fail(
    vendor_cli: Callable[[str], Cli],
) -> None:
    cli = vendor_cli("aliyun")
    run = cli("doctor", "--sample-url", cli.sandbox.video_url("demo-1"))
    assert run.code == 0, run.stdout + run.stderr
    lines = _lines(run)
    assert "DescribeRefreshQuota" in lines["credentials"]
    assert "accelerated in domestic" in lines["domain"]
    overseas = cli("doctor", extra_env={"ALIYUN_AREA": "overseas"})
    assert overseas.code == 1
    assert "set ALIYUN_AREA to domestic" in _lines(overseas)["domain"]
    cli.sandbox.aliyun.domain_status = "offline"
    offline = cli("doctor")
    assert offline.code == 1
    assert "is offline, not online" in _lines(offline)["domain"]
    wrong = cli("doctor", extra_env={"ALIYUN_ACCESS_KEY_SECRET": "wrong"})
    assert wrong.code == 1
    assert _lines(wrong)["credentials"].startswith("✗")
    assert cli.sandbox.aliyun.received_urls() == []


def test_qiniu_checks_pass_then_an_unknown_domain_and_a_frozen_one_fail(
    vendor_cli: Callable[[str], Cli],
) -> None:
    cli = vendor_cli("qiniu")
    run = cli("doctor")
    assert run.code == 0, run.stdout + run.stderr
    lines = _lines(run)
    assert "only in prefetch answers" in lines["quota"]
    assert "accelerated in china" in lines["domain"]
    assert "carry no time" in lines["clock"]
    unknown = cli("doctor", extra_env={"CDN_HOST": "other.example.com"})
    assert unknown.code == 1
    assert "not a CDN domain of this Qiniu account" in _lines(unknown)["domain"]
    cli.sandbox.qiniu.domain_state = "frozen"
    assert "is frozen, not online" in _lines(cli("doctor"))["domain"]
    wrong = cli("doctor", extra_env={"QINIU_SECRET_KEY": "wrong"})
    assert wrong.code == 1
    assert _lines(wrong)["credentials"].startswith("✗")
    assert cli.sandbox.qiniu.received_urls() == []


def test_edgeone_checks_its_keys_quota_and_clock(vendor_cli: Callable[[str], Cli]) -> None:
    cli = vendor_cli("edgeone")
    run = cli("doctor", "--sample-url", cli.sandbox.video_url("demo-1"))
    assert run.code == 0, run.stdout + run.stderr
    lines = _lines(run)
    assert "Tencent EdgeOne (DescribeContentQuota)" in lines["credentials"]
    assert "zone-sandbox0001" in lines["quota"] and "1000 URLs a request" in lines["quota"]
    assert lines["clock"].startswith("✓")
    # DescribeAccelerationDomains: CDN_HOST is a domain of the zone, and online.
    assert lines["domain"].startswith("✓") and "is online" in lines["domain"]
    cli.sandbox.edgeone.domain_status = "offline"
    offline = cli("doctor")
    assert offline.code == 1
    assert "is offline, not online" in _lines(offline)["domain"]
    cli.sandbox.edgeone.domain_status = "online"
    other = cli("doctor", extra_env={"CDN_HOST": "cdn.not-in-the-zone.example.com"})
    assert other.code == 1
    assert "is not a CDN domain of this Tencent EdgeOne account" in _lines(other)["domain"]
    wrong = cli("doctor", extra_env={"EO_ZONE_ID": "zone-not-mine"})
    assert wrong.code == 1
    assert "EO_ZONE_ID" in _lines(wrong)["credentials"]
