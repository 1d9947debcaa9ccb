"""The provider registry: names, declared features, and what reads them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from contract_env import PROVIDER_KINDS, capabilities, settings_from
from pydantic import BaseModel

from cdn_preheat.cachestatus import VENDOR_HEADERS, CacheStatus
from cdn_preheat.config import Settings
from cdn_preheat.demo import run_demo
from cdn_preheat.errors import ConfigError, InputError
from cdn_preheat.providers import (
    build_provider,
    emulated_names,
    make_provider,
    provider_names,
    provider_spec,
    provider_specs,
    register,
    unregister,
)
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
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.server import SERVER_ORDER, Sandbox, emulator_specs
from cdn_preheat.verify import options_from_settings


class FakeConfig(BaseModel):
    token: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> FakeConfig:
        return cls(token="from-settings")


class FakeProvider(Provider):
    name = "fake"
    area = "everywhere"
    limits = Limits(batch_size=2, requests_per_second=1, purge_batch_size=1,
                    purge_dir_batch_size=1)  # fmt: skip
    features: ClassVar[Features] = Features(purge=False, quota_query=False)

    def __init__(self, config: FakeConfig) -> None:
        self.config = config

    def quota(self) -> Quota:
        return Quota(self.area, None, None)

    def submit(self, urls: Sequence[str]) -> SubmitResult:
        return SubmitResult("t", tuple(urls))

    def task_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        return []

    def find_submitted(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        return {}

    def purge_urls(self, urls: Sequence[str]) -> str:
        raise NotImplementedError

    def purge_dirs(self, dirs: Sequence[str], *, delete: bool = False) -> str:
        raise NotImplementedError

    def purge_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        raise NotImplementedError


FAKE = ProviderSpec(
    provider=FakeProvider, title="Fake CDN", config=FakeConfig, build=FakeProvider,
    credentials=("FAKE_TOKEN",),
)  # fmt: skip


@pytest.fixture
def fake() -> Iterator[ProviderSpec]:
    register(FAKE)
    try:
        yield FAKE
    finally:
        unregister("fake")


def test_the_contract_suite_runs_every_registered_provider() -> None:
    assert list(PROVIDER_KINDS) == list(provider_names())
    assert list(provider_names()) == ["tencent", "aliyun", "qiniu", "edgeone", "http"]


def test_every_registration_is_consistent() -> None:
    for spec in provider_specs():
        assert provider_spec(spec.name) is spec
        assert spec.cache_vendor is None or spec.cache_vendor in VENDOR_HEADERS
        for variable in spec.credentials:
            assert variable.lower() in Settings.model_fields
    emulators = emulator_specs()
    assert list(emulators) == list(emulated_names()) == ["tencent", "aliyun", "qiniu", "edgeone"]
    assert all(emulators[name].name == name for name in emulators)
    assert ("origin", "edge", *emulated_names()) == SERVER_ORDER


def test_every_registrations_target_facts_name_settings_that_accept_them() -> None:
    """A target's area, endpoint and keys go to Settings fields that take those values."""
    for spec in provider_specs():
        for field in (*spec.endpoint_settings, *spec.credential_settings()):
            assert field in Settings.model_fields, (spec.name, field)
        if spec.area_setting is None:
            assert spec.areas == ("global",), spec.name  # one area
            continue
        assert spec.area_setting in Settings.model_fields, spec.name
        if spec.zoned:
            continue
        default = Settings.model_fields[spec.area_setting].default
        assert spec.default_area == default, spec.name
        for area in spec.areas:
            settings = Settings.model_validate({spec.area_setting: area})
            assert getattr(settings, spec.area_setting) == area
        with pytest.raises(ValueError, match=spec.area_setting):
            Settings.model_validate({spec.area_setting: "no-such-area"})
    assert provider_spec("edgeone").zoned and not provider_spec("tencent").zoned


def test_every_emulator_answers_the_cache_header_its_provider_reads() -> None:
    """The sandbox edge's headers come from each emulator's declaration, in the form
    the provider's registered cache parser (verify) reads."""
    import httpx

    from cdn_preheat.cachestatus import parse_cache_status

    for name, emulator in emulator_specs().items():
        vendor = provider_spec(name).cache_vendor
        headers = emulator.cache_headers
        assert set(headers) == {"edge", "upper", "origin"}, name
        verdict = {k: parse_cache_status(httpx.Headers(v), vendor) for k, v in headers.items()}
        assert verdict["edge"].status is CacheStatus.HIT, name
        assert verdict["upper"].cached, name
        assert verdict["origin"].status is CacheStatus.MISS, name
        assert emulator.prefetch_layer("", "") in ("edge", "upper"), name


def test_an_unknown_provider_is_refused_naming_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"CDN_PROVIDER is invalid: must be one of tencent, "):
        from cdn_preheat.config import load_settings

        load_settings(_env_file=None, cdn_provider="nosuchcdn")
    with pytest.raises(ConfigError, match="is not one of tencent, aliyun, qiniu, edgeone, http"):
        provider_spec("nosuchcdn")


def test_a_registered_provider_is_built_by_make_provider(fake: ProviderSpec) -> None:
    assert "fake" in provider_names()
    provider = make_provider(settings_from({"CDN_PROVIDER": "fake"}))
    assert isinstance(provider, FakeProvider)
    assert provider.config.token == "from-settings"
    built = build_provider("fake", {"token": "plain"})
    assert isinstance(built, FakeProvider)
    assert built.config.token == "plain"


def test_a_providers_features_drive_the_contract_flags(fake: ProviderSpec) -> None:
    flags = capabilities(fake)
    assert flags["can_purge"] is False
    assert flags["quota_calls_api"] is False
    assert flags["quota_known_before_submit"] is False  # a daily quota no API reports
    assert flags["api_faults"] is False  # no emulator
    assert flags["secret_variable"] == "FAKE_TOKEN"
    assert flags["missing_file_state"] is TaskState.INVALID
    assert flags["reconciles_from_vendor"] is True

    class Changed(FakeProvider):
        features = Features(
            daily_quota=False, quota_query=False, tells_missing_file=False, task_list=False
        )

    changed = capabilities(dataclasses.replace(fake, provider=Changed, emulator="x"))
    assert changed["can_purge"] is True
    assert changed["quota_known_before_submit"] is True  # no daily quota: nothing to learn
    assert changed["api_faults"] is True
    assert changed["missing_file_state"] is TaskState.FAILED
    assert changed["reconciles_from_vendor"] is False
    assert capabilities(dataclasses.replace(fake, emulator="x"), live=True)["api_faults"] is False


def test_demo_offers_the_emulated_providers_only(fake: ProviderSpec) -> None:
    with pytest.raises(InputError) as caught:
        run_demo(provider="fake")
    assert str(caught.value) == "--provider must be one of tencent, aliyun, qiniu, edgeone."


def test_verify_reads_the_cache_header_the_registration_names() -> None:
    for spec in provider_specs():
        settings = settings_from({"CDN_PROVIDER": spec.name})
        assert options_from_settings(settings).vendor == spec.cache_vendor
    assert provider_spec("http").cache_vendor is None


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(videos=1, segments=2, task_delay=0) as box:
        yield box


def test_build_provider_from_plain_arguments_reads_no_environment(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sandbox.client_env("tencent")
    # What the environment says must not matter to a provider built from arguments.
    monkeypatch.setenv("TENCENT_AREA", "overseas")
    monkeypatch.setenv("TENCENT_SECRET_KEY", "wrong-key-from-the-environment")
    provider = build_provider(
        "tencent",
        {"secret_id": env["TENCENT_SECRET_ID"], "secret_key": env["TENCENT_SECRET_KEY"]},
        endpoint=env["TENCENT_ENDPOINT"],
        cdn_host=env["CDN_HOST"],
        rate=5,
    )
    assert isinstance(provider, TencentProvider)
    assert provider.area == "mainland"
    assert provider.quota().available is not None  # the sandbox accepted the keys given
    assert provider.pacing._cap == 5  # CDN_PREHEAT_RATE's cap, from rate=


def test_build_provider_refuses_what_the_vendor_model_lacks() -> None:
    with pytest.raises(ConfigError, match=r"tencent: .*EXTRA is invalid"):
        build_provider("tencent", {"secret_id": "a", "secret_key": "b"}, extra="x")
    with pytest.raises(ConfigError, match="TENCENT_SECRET_ID is not set"):
        build_provider("tencent", {})


def test_the_stats_refusal_names_the_providers_declaring_stats(fake: ProviderSpec) -> None:
    from cdn_preheat.report import stats_provider

    class WithStats(FakeProvider):
        name = "fakestats"
        features = Features(stats=True)

    register(dataclasses.replace(fake, provider=WithStats))
    try:
        with pytest.raises(ConfigError) as caught:
            stats_provider(make_provider(settings_from({"CDN_PROVIDER": "fake"})))
    finally:
        unregister("fakestats")
    assert str(caught.value) == (
        "CDN_PROVIDER=fake has no traffic statistics or log API; use tencent or qiniu or fakestats."
    )


def test_the_logs_refusal_reads_the_logs_feature(fake: ProviderSpec) -> None:
    """A provider answering logs() but not declaring ``logs`` is refused, by its features."""
    from cdn_preheat.providers.stats import LogFile
    from cdn_preheat.report import access_logs, stats_provider

    class StatsOnly(FakeProvider):
        name = "statsonly"
        features = Features(stats=True, logs=False)

        def flux(self, domain: str, start: dt.datetime, end: dt.datetime,
                 granularity: object = None, metric: str = "flux") -> object:  # fmt: skip
            raise AssertionError("not asked")

        def logs(self, domain: str, day: dt.date) -> list[LogFile]:
            raise AssertionError("a provider not declaring logs is not asked for them")

    register(dataclasses.replace(fake, provider=StatsOnly, build=StatsOnly))
    try:
        provider = make_provider(settings_from({"CDN_PROVIDER": "statsonly"}))
        assert stats_provider(provider) is provider  # it declares stats
        with pytest.raises(ConfigError) as caught:
            access_logs(provider, "cdn.example.com", dt.date(2026, 1, 1))
    finally:
        unregister("statsonly")
    assert str(caught.value) == (
        "CDN_PROVIDER=statsonly has no access-log API; use tencent or qiniu."
    )


def test_purge_delete_is_refused_where_the_provider_declares_no_delete_mode(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from cdn_preheat.ledger.sqlite import SqliteLedger
    from cdn_preheat.purge import purge

    assert not provider_spec("qiniu").features.purge_delete
    provider = make_provider(settings_from(sandbox.client_env("qiniu")))
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    try:
        with pytest.raises(InputError, match="cannot delete cached copies"):
            purge(ledger, provider, dirs=[sandbox.edge_url("/vod/demo-1/")], delete=True)
        assert ledger.open_tasks("qiniu", "global", "purge") == []  # nothing was sent
    finally:
        ledger.close()
        provider.close()
