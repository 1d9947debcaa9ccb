"""Settings: old variable names, clear errors naming the variable, no secret echoed."""

import pytest

from cdn_preheat.config import Settings, load_settings, require_secret
from cdn_preheat.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory) -> None:
    for name in (
        "TENCENT_SECRET_ID",
        "TENCENT_SECRET_KEY",
        "CDN_HOST",
        "MONGODB_URI",
        "CDN_PROVIDER",
        "CDN_PREHEAT_STORE",
        "CDN_PREHEAT_MAX_AGE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_old_script_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENCENT_SECRET_ID", "AKIDold")
    monkeypatch.setenv("TENCENT_SECRET_KEY", "old-key")
    monkeypatch.setenv("CDN_HOST", "cdn.example.com")
    monkeypatch.setenv("MONGODB_URI", "mongodb://localhost:27017/")
    settings = load_settings()
    assert require_secret(settings.tencent_secret_id, "TENCENT_SECRET_ID") == "AKIDold"
    assert settings.cdn_host == "cdn.example.com"
    assert settings.store_kind == "mongodb"
    assert settings.cdn_provider == "tencent"


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("CDN_HOST=https://video.example.com/\nCDN_PROVIDER=qiniu\n")
    settings = load_settings()
    assert settings.cdn_host == "video.example.com"  # a URL is reduced to its host
    assert settings.cdn_provider == "qiniu"
    assert settings.store_kind == "sqlite"


@pytest.mark.parametrize(
    "value",
    ["cdn example.com", "cdn.example.com?x=1", "bob@cdn.example.com", "cdn.example.com/vod"],
)
def test_a_cdn_host_that_is_no_host_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CDN_HOST", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == "CDN_HOST is invalid: must be a host name such as cdn.example.com."


@pytest.mark.parametrize("value", ["cdn.example.com:8080", "https://cdn.example.com/", "[::1]:81"])
def test_a_cdn_host_with_a_port_or_as_a_url_is_kept_as_its_host(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CDN_HOST", value)
    assert load_settings().cdn_host == value.removeprefix("https://").rstrip("/")


def test_malformed_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_PROVIDER", "akamai")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "CDN_PROVIDER" in str(caught.value)
    assert caught.value.exit_code == 2


def test_bad_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_PREHEAT_CONCURRENCY", "s3cr3t-looking-value")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "CDN_PREHEAT_CONCURRENCY" in str(caught.value)
    assert "s3cr3t-looking-value" not in str(caught.value)


def test_missing_secret_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TENCENT_SECRET_KEY is not set"):
        require_secret(Settings().tencent_secret_key, "TENCENT_SECRET_KEY")


def test_secrets_do_not_appear_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENCENT_SECRET_KEY", "very-secret-key")
    monkeypatch.setenv("MONGODB_URI", "mongodb://user:hunter2@db:27017/")
    text = repr(load_settings()) + str(load_settings().model_dump())
    assert "very-secret-key" not in text
    assert "hunter2" not in text


def test_endpoint_override_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENCENT_ENDPOINT", "127.0.0.1:8090")
    assert load_settings().tencent_endpoint == "https://127.0.0.1:8090"
    monkeypatch.setenv("TENCENT_ENDPOINT", "http://127.0.0.1:8090/")
    assert load_settings().tencent_endpoint == "http://127.0.0.1:8090"


def test_poll_seconds_sets_the_trackers_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdn_preheat.app import run_options

    monkeypatch.delenv("CDN_PREHEAT_POLL_SECONDS", raising=False)
    assert run_options(load_settings()).tracker.poll_interval == 1.0
    monkeypatch.setenv("CDN_PREHEAT_POLL_SECONDS", "0.05")
    assert run_options(load_settings()).tracker.poll_interval == 0.05
    assert run_options(load_settings(), poll_interval=0.2).tracker.poll_interval == 0.2
    monkeypatch.setenv("CDN_PREHEAT_POLL_SECONDS", "0")
    with pytest.raises(ConfigError, match="CDN_PREHEAT_POLL_SECONDS"):
        load_settings()
