"""A vendor is one module and one registry line: the targets package learns it from its SPEC.

The provider below lives in this test only. Registering its ``ProviderSpec`` is all
it takes for a targets file to name it: its key variables, its areas (default and
allowed), where a target's area, endpoint and keys go in the settings, and the ledger
key, with no vendor table in ``cdn_preheat.targets``. Its variables are fields of a
``Settings`` model (``config.py`` is the one place that reads the environment), so
the test adds them with a subclass, as a vendor module's author adds them there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from pydantic import BaseModel, SecretStr

from cdn_preheat.config import Settings
from cdn_preheat.errors import ConfigError
from cdn_preheat.providers import make_provider, register, unregister
from cdn_preheat.providers.base import (
    Features,
    Limits,
    Provider,
    ProviderSpec,
    Quota,
    SubmitResult,
    TaskEntry,
)
from cdn_preheat.targets import KeyedProvider, build_units, load_targets_file, resolve_targets


class AcmeSettings(Settings):
    acme_key_id: SecretStr | None = None
    acme_key_secret: SecretStr | None = None
    acme_region: Literal["eu", "us"] = "eu"
    acme_endpoint: str | None = None


class AcmeConfig(BaseModel):
    key_id: SecretStr | None = None
    key_secret: SecretStr | None = None
    region: str = "eu"
    endpoint: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AcmeConfig:
        return cls(
            key_id=getattr(settings, "acme_key_id", None),
            key_secret=getattr(settings, "acme_key_secret", None),
            region=getattr(settings, "acme_region", "eu"),
            endpoint=getattr(settings, "acme_endpoint", None),
        )


class AcmeProvider(Provider):
    name = "acme"
    limits = Limits(batch_size=10, requests_per_second=5, purge_batch_size=10,
                    purge_dir_batch_size=10)  # fmt: skip
    features: ClassVar[Features] = Features()

    def __init__(self, config: AcmeConfig) -> None:
        if config.key_id is None or config.key_secret is None:
            raise ConfigError("ACME_KEY_ID and ACME_KEY_SECRET must both be set.")
        self.config = config
        self.area = config.region

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


ACME = ProviderSpec(
    provider=AcmeProvider, title="Acme CDN", config=AcmeConfig, build=AcmeProvider,
    credentials=("ACME_KEY_ID", "ACME_KEY_SECRET"), areas=("eu", "us"),
    area_setting="acme_region", endpoint_settings=("acme_endpoint",),
)  # fmt: skip

FILE = """
[[targets]]
name = "acme"
provider = "acme"
cdn_host = "cdn.example.com"

[[targets]]
name = "acme-us"
provider = "acme"
area = "us"
cdn_host = "cdn-us.example.com"
key_id_env = "US_ID"
key_secret_env = "US_SECRET"
endpoint = "http://127.0.0.1:9999"
"""
ENV = {
    "ACME_KEY_ID": "acme-default-id",
    "ACME_KEY_SECRET": "acme-default-secret",
    "US_ID": "acme-us-id",
    "US_SECRET": "acme-us-secret",
}


@pytest.fixture
def acme() -> Iterator[ProviderSpec]:
    register(ACME)
    try:
        yield ACME
    finally:
        unregister("acme")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(text, encoding="utf-8")
    return path


def settings(**values: object) -> AcmeSettings:
    return AcmeSettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_a_registered_provider_is_a_target_with_its_declared_keys_area_and_endpoint(
    acme: ProviderSpec, tmp_path: Path
) -> None:
    path = write(tmp_path, FILE)
    first, second = resolve_targets(settings(cdn_preheat_targets=str(path)), ENV)

    assert first.key == ("acme", "eu")  # the declared default area
    assert first.spec.key_env == ("ACME_KEY_ID", "ACME_KEY_SECRET")  # the declared variables
    one = first.settings
    assert isinstance(one, AcmeSettings)  # the target's settings are the base's, updated
    assert one.cdn_provider == "acme"
    assert one.acme_key_id is not None
    assert one.acme_key_id.get_secret_value() == "acme-default-id"
    assert one.acme_region == "eu"
    assert one.acme_endpoint is None

    assert second.key == ("acme-us", "us")
    two = second.settings
    assert isinstance(two, AcmeSettings)
    assert two.acme_key_id.get_secret_value() == "acme-us-id"
    assert two.acme_key_secret.get_secret_value() == "acme-us-secret"
    assert two.acme_region == "us"
    assert two.acme_endpoint == "http://127.0.0.1:9999"

    # The providers are the registered vendor's, built from each target's settings.
    units = build_units([first, second], make_provider=make_provider)
    try:
        assert isinstance(units[0].provider, AcmeProvider)  # the provider's own ledger key
        assert isinstance(units[1].provider, KeyedProvider)
        inner = units[1].provider.inner
        assert isinstance(inner, AcmeProvider)
        assert inner.area == "us"
        assert inner.config.endpoint == "http://127.0.0.1:9999"
    finally:
        for unit in units:
            unit.provider.close()


def test_the_single_provider_target_reads_the_declared_area_setting(acme: ProviderSpec) -> None:
    (target,) = resolve_targets(settings(cdn_provider="acme", acme_region="us"), {})
    assert target.key == ("acme", "us")


def test_a_registered_providers_areas_are_checked_from_its_registration(
    acme: ProviderSpec, tmp_path: Path
) -> None:
    path = write(tmp_path, FILE.replace('area = "us"', 'area = "mars"'))
    with pytest.raises(ConfigError) as caught:
        load_targets_file(path)
    assert str(caught.value) == (
        f"The targets file {path} (CDN_PREHEAT_TARGETS): target 'acme-us': area must be one "
        "of eu, us for acme."
    )


def test_a_target_named_after_a_registered_provider_must_use_it(
    acme: ProviderSpec, tmp_path: Path
) -> None:
    text = FILE.replace('name = "acme"\nprovider = "acme"', 'name = "acme"\nprovider = "qiniu"')
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="target 'acme' must use provider 'acme'"):
        load_targets_file(path)


def test_the_registrations_credentials_name_the_targets_own_variables(
    acme: ProviderSpec, tmp_path: Path
) -> None:
    path = write(tmp_path, FILE)
    _, second = resolve_targets(settings(cdn_preheat_targets=str(path)), ENV)
    message = second.explain(ConfigError("ACME_KEY_ID and ACME_KEY_SECRET must both be set."))
    assert message == "target acme-us: US_ID and US_SECRET must both be set."
    env = {k: v for k, v in ENV.items() if k != "US_SECRET"}
    with pytest.raises(ConfigError, match="takes its keys from US_SECRET, which is not set"):
        resolve_targets(settings(cdn_preheat_targets=str(path)), env)


def test_an_unregistered_provider_is_refused_naming_the_registered_ones(tmp_path: Path) -> None:
    path = write(tmp_path, FILE)
    with pytest.raises(ConfigError) as caught:
        load_targets_file(path)
    assert str(caught.value) == (
        f"The targets file {path} (CDN_PREHEAT_TARGETS): target 'acme': provider input should "
        "be one of tencent, aliyun, qiniu, edgeone, http."
    )


def test_a_scoped_ledger_counts_its_own_target_only(tmp_path: Path) -> None:
    from cdn_preheat.ledger.base import QueuedUrl, UrlState
    from cdn_preheat.ledger.sqlite import SqliteLedger
    from cdn_preheat.targets import scoped

    ledger = SqliteLedger(tmp_path / "ledger.db")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for key, names in [(("tencent", "mainland"), "ab"), (("tencent-b", "mainland"), "abc")]:
        items = [QueuedUrl(f"https://cdn.example.com/{n}", "segment") for n in names]
        ledger.enqueue("v1", *key, items, now, dt.timedelta(days=1))
    view = scoped(ledger, ("tencent-b", "mainland"))
    assert view.counts() == {UrlState.PENDING: 3}
    assert view.counts("v1") == {UrlState.PENDING: 3}
    assert view.counts(target=("tencent-b", "mainland")) == {UrlState.PENDING: 3}
    with pytest.raises(ValueError, match="no other target"):
        view.counts(target=("tencent", "mainland"))
    ledger.close()


class OneRequestAcme(AcmeProvider):
    """Answers find_request apart from find_submitted, to see which one a wrapper asks."""

    def find_request(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        return dict.fromkeys(urls, f"req-{self.config.region}")


def test_target_and_pool_wrappers_ask_their_members_find_request() -> None:
    """A lost push of a target or pool is looked up with the member's own find_request
    (one request: Alibaba's two-call lookup), not its find_submitted (the whole list)."""
    from cdn_preheat.targets import PoolProvider

    def member(region: str) -> OneRequestAcme:
        return OneRequestAcme(AcmeConfig(key_id="i", key_secret="s", region=region))

    since = dt.datetime.now(dt.UTC)
    keyed = KeyedProvider(member("eu"), "acme-eu")
    assert keyed.find_request(["u"], since) == {"u": "req-eu"}
    assert keyed.find_submitted(["u"], since) == {}
    pool = PoolProvider("p", [("a", member("eu")), ("b", member("us"))])
    assert pool.find_request(["u"], since) == {"u": "a/req-eu"}
    assert pool.find_submitted(["u"], since) == {}
