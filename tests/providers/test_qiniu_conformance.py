"""Qiniu behaviours of real accounts (sources in ``sandbox/qiniu.py`` and
``providers/qiniu.py``): directory refresh off by default, HTTPS, list timestamps,
and the one private SDK function the provider relies on."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import inspect
import socket
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import qiniu.http
import qiniu.services.cdn.manager
from contract_env import settings_from
from packaging.requirements import Requirement

from cdn_preheat.config import Settings
from cdn_preheat.errors import PermissionDenied, Transient
from cdn_preheat.providers import qiniu as qiniu_provider
from cdn_preheat.providers.qiniu import QiniuProvider
from cdn_preheat.sandbox.qiniu import QiniuLimits
from cdn_preheat.sandbox.server import Sandbox

ROOT = Path(__file__).resolve().parents[2]


def sandbox_with(**limits: object) -> Sandbox:
    options: dict[str, object] = {"task_delay": 0, "prefetch_quota": 1000, **limits}
    return Sandbox(videos=1, segments=3, qiniu_limits=QiniuLimits(**options))  # type: ignore[arg-type]


def provider(box: Sandbox) -> QiniuProvider:
    return QiniuProvider(settings_from(box.client_env("qiniu")))


# -- 400038 ---------------------------------------------------------------------------


def test_directory_refresh_off_by_default_is_one_sentence() -> None:
    with sandbox_with() as box:
        with pytest.raises(PermissionDenied) as caught:
            provider(box).purge_dirs([box.edge_url("/vod/demo-1/")])
        message = str(caught.value)
        assert caught.value.code == "400038"
        assert "directory refresh is not enabled" in message
        assert message.count(". ") == 0 and message.endswith(".")
        # URL refresh is unaffected.
        assert provider(box).purge_urls([box.edge_url("/vod/demo-1/master.m3u8")])


def test_directory_refresh_when_the_account_has_it() -> None:
    with sandbox_with(refresh_dir_enabled=True) as box:
        assert provider(box).purge_dirs([box.edge_url("/vod/demo-1/")])


# -- HTTPS ----------------------------------------------------------------------------


@pytest.fixture
def recording_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A proxy for every scheme that records each request line and hangs up."""
    lines: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(4096)
                lines.append(data.split(b"\r\n", 1)[0].decode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield lines
    listener.close()


def test_the_fusion_api_is_reached_over_https_by_default(recording_proxy: list[str]) -> None:
    settings = Settings(_env_file=None, qiniu_access_key="ak", qiniu_secret_key="sk")
    cdn = QiniuProvider(settings)
    with pytest.raises(Transient):
        cdn.submit(["https://cdn.example.com/a.ts"])
    with pytest.raises(Transient):
        cdn.task_status(["some-request-id"])  # the list calls too
    assert len(recording_proxy) >= 2
    assert {line.rsplit(" ", 1)[0] for line in recording_proxy} == {
        "CONNECT fusion.qiniuapi.com:443"
    }


# -- list timestamps ------------------------------------------------------------------


@pytest.mark.parametrize("style", ["plain", "iso8601"])
def test_task_times_are_read_whatever_the_list_format(style: str) -> None:
    with sandbox_with(list_time_style=style) as box:
        cdn = provider(box)
        before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
        url = box.edge_url("/vod/demo-1/master.m3u8")
        task = cdn.submit([url]).task_id
        (entry,) = cdn.task_status([task])
        assert entry.created_at is not None and entry.created_at >= before
        assert cdn.find_submitted([url], before) == {url: task}


@pytest.mark.parametrize(
    "text",
    ["2024-03-01T13:04:05+08:00", "2024-03-01 13:04", "2024-03-01T05:04:05Z", "1709269445"],
)
def test_known_shapes_of_a_timestamp_parse(text: str) -> None:
    moment = qiniu_provider._parse_time(text)
    assert moment is not None and moment.tzinfo is not None
    assert moment.date() == dt.date(2024, 3, 1)


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-45 99:99:99", "١٢", None, [], 1e300])
def test_unexpected_timestamps_are_none_never_an_exception(text: object) -> None:
    assert qiniu_provider._parse_time(text) is None


# -- the private SDK function ---------------------------------------------------------


def test_private_sdk_function_is_still_what_the_provider_expects() -> None:
    """Fails when a qiniu release changes the function the task lists rely on.

    Raise the cap in pyproject.toml only after this and the Qiniu provider tests pass.
    """
    function = qiniu.http._post_with_auth_and_headers
    assert list(inspect.signature(function).parameters) == ["url", "data", "auth", "headers"]
    # CdnManager signs its own JSON posts with it, so the lists are signed the same way.
    assert "_post_with_auth_and_headers" in inspect.getsource(qiniu.services.cdn.manager)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (spec,) = [
        Requirement(d) for d in pyproject["project"]["dependencies"] if d.startswith("qiniu")
    ]
    assert any(s.operator == "<" for s in spec.specifier), "qiniu needs an upper bound"
    assert importlib.metadata.version("qiniu") in spec.specifier


def test_private_sdk_post_is_signed_as_the_emulator_checks() -> None:
    with sandbox_with() as box:
        cdn = provider(box)
        ret, info = cdn._post("/v2/tune/prefetch/list", {"pageNo": 0, "pageSize": 1})
        assert info.status_code == 200 and ret["code"] == 200
