"""The targets file: validation, secrets from the environment only, ledger keys, host mapping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cdn_preheat.config import load_settings
from cdn_preheat.errors import ConfigError, InputError
from cdn_preheat.ledger.base import PendingGroup
from cdn_preheat.targets import (
    POOL_AREA,
    KeyedProvider,
    PoolProvider,
    _cold,
    build_units,
    load_targets_file,
    map_host,
    parse_deadline,
    resolve_targets,
)

GOOD = """
[[targets]]
name = "tencent"
provider = "tencent"
cdn_host = "cdn.example.com"

[[targets]]
name = "tencent-b"
provider = "tencent"
area = "overseas"
cdn_host = "https://cdn-b.example.com/"
key_id_env = "B_ID"
key_secret_env = "B_KEY"
rate = 5

[[targets]]
name = "intl"
provider = "qiniu"
cdn_host = "cdn-intl.example.com"
key_id_env = "Q_ID"
key_secret_env = "Q_KEY"
"""
ENV = {
    "TENCENT_SECRET_ID": "AKIDaaaa",
    "TENCENT_SECRET_KEY": "key-a-secret",
    "B_ID": "AKIDbbbb",
    "B_KEY": "key-b-secret",
    "Q_ID": "qiniu-id",
    "Q_KEY": "qiniu-secret",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(text, encoding="utf-8")
    return path


def targets_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    path = write(tmp_path, text)
    settings = load_settings(cdn_preheat_targets=str(path))
    with pytest.raises(ConfigError) as caught:
        resolve_targets(settings, ENV if env is None else env)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_a_good_file_gives_each_target_its_keys_area_host_and_caps(tmp_path: Path) -> None:
    settings = load_settings(cdn_preheat_targets=str(write(tmp_path, GOOD)))
    targets = resolve_targets(settings, ENV)
    assert [t.key for t in targets] == [
        ("tencent", "mainland"),
        ("tencent-b", "overseas"),
        ("intl", "global"),
    ]
    b = targets[1].settings
    assert b.tencent_secret_id is not None and b.tencent_secret_id.get_secret_value() == "AKIDbbbb"
    assert b.tencent_area == "overseas"
    assert b.cdn_host == "cdn-b.example.com"
    assert b.cdn_preheat_rate == 5
    q = targets[2].settings
    assert q.cdn_provider == "qiniu"
    assert q.qiniu_secret_key is not None
    assert q.qiniu_secret_key.get_secret_value() == "qiniu-secret"


def test_without_a_file_the_single_provider_settings_are_the_one_target() -> None:
    settings = load_settings(cdn_provider="qiniu", cdn_host="cdn.example.com")
    [target] = resolve_targets(settings, {})
    # The key every ledger written before targets existed uses.
    assert target.key == ("qiniu", "global")
    assert target.settings is settings


def test_a_secret_written_in_the_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = GOOD.replace('key_id_env = "B_ID"', 'secret_key = "hunter2-not-here"')
    message = targets_error(tmp_path, text)
    assert "target 'tencent-b' gives secret_key itself" in message
    assert "key_secret_env" in message
    assert "hunter2" not in message


def test_an_unset_key_variable_names_the_target_and_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "B_KEY"}
    message = targets_error(tmp_path, GOOD, env)
    assert "target 'tencent-b' takes its keys from B_KEY, which is not set" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("rate = 5", "rate = -1"), "target 'tencent-b': rate input should be greater than 0"),
        (("rate = 5", "colour = 5"), "target 'tencent-b' has an unknown key colour"),
        (('provider = "qiniu"', 'provider = "akamai"'), "target 'intl': provider input should be"),
        (('name = "intl"', 'name = "tencent-b"'), "the target name 'tencent-b' is used twice"),
        (('name = "intl"', 'name = "aliyun"'), "target 'aliyun' must use provider 'aliyun'"),
        (('area = "overseas"', 'area = "mars"'), "area must be one of mainland, overseas"),
        (('name = "intl"', 'name = "Intl Target"'), "target 'Intl Target': name must be lowercase"),
        (("[[targets]]", "[[target]]"), "unknown key target"),
        (("rate = 5", "rate = "), "is not valid TOML"),
    ],
)
def test_each_problem_is_one_sentence(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    assert expected in targets_error(tmp_path, GOOD.replace(*change, 1))


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    settings = load_settings(cdn_preheat_targets=str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_targets(settings, ENV)


def test_pool_members_must_share_provider_and_host(tmp_path: Path) -> None:
    text = GOOD.replace(
        'cdn_host = "cdn-intl.example.com"', 'cdn_host = "x.example.com"\npool = "p"'
    )
    text = text.replace("rate = 5", 'rate = 5\npool = "p"')
    assert "must share one provider" in targets_error(tmp_path, text)
    same = GOOD.replace("rate = 5", 'rate = 5\npool = "p"').replace(
        'cdn_host = "cdn.example.com"', 'cdn_host = "cdn.example.com"\npool = "p"'
    )
    assert "must share one cdn_host" in targets_error(tmp_path, same)


def test_units_key_targets_by_name_and_pools_by_pool_name(tmp_path: Path) -> None:
    text = GOOD.replace("rate = 5", 'rate = 5\npool = "both"').replace(
        'cdn_host = "cdn.example.com"', 'cdn_host = "cdn-b.example.com"\npool = "both"'
    )
    settings = load_settings(cdn_preheat_targets=str(write(tmp_path, text)))
    units = build_units(resolve_targets(settings, ENV))
    try:
        assert [(u.name, u.key) for u in units] == [
            ("both", ("both", POOL_AREA)),
            ("intl", ("intl", "global")),
        ]
        pool = units[0].provider
        assert isinstance(pool, PoolProvider)
        assert list(pool.members) == ["tencent", "tencent-b"]
        assert isinstance(units[1].provider, KeyedProvider)
        assert units[1].provider.inner.name == "qiniu"
    finally:
        for unit in units:
            unit.provider.close()


def test_host_mapping_rewrites_only_the_mapped_host() -> None:
    assert map_host("https://a.com/v/1.ts?x=1", "a.com", "b.com") == "https://b.com/v/1.ts?x=1"
    assert map_host("https://A.com/v/1.ts", "a.com", "b.com") == "https://b.com/v/1.ts"
    assert map_host("https://other.com/v/1.ts", "a.com", "b.com") == "https://other.com/v/1.ts"
    assert map_host("https://a.com.evil/v", "a.com", "b.com") == "https://a.com.evil/v"


def test_cold_videos_follow_claim_order() -> None:
    groups = [
        PendingGroup("v1", 1, 3),
        PendingGroup("v2", 1, 3),
        PendingGroup("v1", 2, 10),
        PendingGroup("v2", 2, 10),
    ]
    cold = _cold(groups, 12)
    # Both heads fit, v1's tail partly (6 of 10), v2's tail not at all.
    assert [(c.video_id, c.pending, c.reached) for c in cold] == [("v1", 13, 9), ("v2", 13, 3)]
    assert _cold(groups, 26) == []


def test_deadlines_parse_as_spans_or_iso_times() -> None:
    now = dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC)
    assert parse_deadline("90m", now) == now + dt.timedelta(minutes=90)
    assert parse_deadline("2026-12-02T20:00+08:00", now) == dt.datetime(
        2026, 12, 2, 12, 0, tzinfo=dt.UTC
    )
    with pytest.raises(InputError, match="already past"):
        parse_deadline("2026-12-01T00:00Z", now)
    with pytest.raises(InputError, match="--by takes"):
        parse_deadline("tomorrow", now)


def test_the_readme_example_is_a_valid_targets_file(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Several CDNs, accounts and areas at once (targets)", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    specs = load_targets_file(write(tmp_path, block))
    assert [s.name for s in specs] == ["tencent", "tencent-b", "tencent-c", "intl"]
    assert [s.pool for s in specs] == [None, "premiere", "premiere", None]
    assert specs[3].resolved_area == "zone-2o0l3ab1c2"
