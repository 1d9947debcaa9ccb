"""The front door: typos, bad input and bad settings are one sentence, the promised
exit code, and a ledger left as it was (issue 10, items 2 and 9)."""

from __future__ import annotations

import sqlite3

import pytest
from clirun import Cli, Run

WRONG_KEY = "definitely-not-the-key-1234"


def one_sentence(run: Run) -> str:
    """The error line of a run that failed cleanly: one line, no traceback."""
    assert "Traceback" not in run.stderr, run.stderr
    text = " ".join(line.strip() for line in run.stderr.splitlines() if line.strip())
    assert text.startswith("error: "), run.stderr
    assert text.count("error:") == 1, run.stderr
    return text


def ledger_videos(cli: Cli) -> list[str]:
    path = cli.workdir / "ledger.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT video_id FROM videos")]


# Item 2: a typo never pushes -------------------------------------------------
def test_a_typo_of_a_command_says_did_you_mean_and_pushes_nothing(cli: Cli) -> None:
    run = cli("expnad", cli.sandbox.video_url("demo-1"))
    assert run.code == 2
    assert one_sentence(run) == "error: no such command 'expnad'; did you mean 'expand'?"
    assert cli.sandbox.tencent.received_urls() == []
    assert ledger_videos(cli) == []


def test_a_typo_after_debug_is_refused_too(cli: Cli) -> None:
    run = cli("--debug", "stauts", cli.sandbox.video_url("demo-1"))
    assert run.code == 2
    assert "'status'" in run.stderr and "did you mean" in run.stderr
    assert cli.sandbox.tencent.received_urls() == []


def test_the_old_form_needs_an_http_url_second(cli: Cli) -> None:
    run = cli("ep-101", "not-a-url")
    assert run.code == 2
    assert cli.sandbox.tencent.received_urls() == []
    assert ledger_videos(cli) == []


def test_the_old_form_after_debug_still_pushes(cli: Cli) -> None:
    run = cli("--debug", "ep-101", cli.sandbox.video_url("demo-1"))
    assert run.code == 0, run.stderr
    assert cli.sandbox.tencent.received_urls()
    assert ledger_videos(cli) == ["ep-101"]


@pytest.mark.parametrize(
    ("video_id", "words"),
    [("", "empty video id"), ("  ", "empty video id"), ("ep\x07101", "control characters")],
)
def test_an_unusable_video_id_is_exit_2(cli: Cli, video_id: str, words: str) -> None:
    run = cli("push", video_id, cli.sandbox.video_url("demo-1"))
    assert run.code == 2
    assert words in one_sentence(run)
    assert cli.sandbox.tencent.received_urls() == []
    assert ledger_videos(cli) == []


@pytest.mark.parametrize("content", ["", "\n\n# only a comment\n", "video_id,m3u8_url\n"])
def test_an_empty_batch_file_is_exit_2(cli: Cli, content: str) -> None:
    (cli.workdir / "videos.csv").write_text(content)
    run = cli("batch", "videos.csv")
    assert run.code == 2
    assert "videos.csv holds no videos" in one_sentence(run)


def test_a_batch_line_with_a_control_character_id_is_reported(cli: Cli) -> None:
    good = cli.sandbox.video_url("demo-1")
    (cli.workdir / "videos.csv").write_text(f"bad\x01id,{good}\ndemo-1,{good}\n")
    run = cli("batch", "videos.csv")
    assert run.code == 2
    assert "videos.csv:1:" in run.stderr and "control characters" in run.stderr
    assert ledger_videos(cli) == ["demo-1"]


def test_a_negative_sample_is_exit_2(cli: Cli) -> None:
    run = cli("verify", "demo-1", "--sample", "-5")
    assert run.code == 2
    assert "--sample" in run.stderr
    assert "Traceback" not in run.stderr


# Item 9: errors are one sentence with the promised exit code -------------------
BAD_SETTINGS = {
    "headers-not-json": ({"TENCENT_HEADERS": "{not json"}, "TENCENT_HEADERS"),
    "edge-not-an-ip": ({"CDN_PREHEAT_EDGE_IPS": "not-an-ip"}, "CDN_PREHEAT_EDGE_IPS"),
    "mongo-slash-in-password": (
        {"MONGODB_URI": "mongodb://user:pa/ss-s3cret@127.0.0.1:1/db"},
        "MONGODB_URI",
    ),
    "mongo-at-in-password": (
        {"MONGODB_URI": "mongodb://user:p@ss-s3cret@127.0.0.1:1/db"},
        "MONGODB_URI",
    ),
    "mongo-bad-port": ({"MONGODB_URI": "mongodb://127.0.0.1:99999/db"}, "MONGODB_URI"),
    "mongo-port-not-a-number": ({"MONGODB_URI": "mongodb://127.0.0.1:abc/db"}, "MONGODB_URI"),
    "unwritable-ledger": (
        {"CDN_PREHEAT_DB": "/proc/no-such-dir/ledger.sqlite3"},
        "CDN_PREHEAT_DB",
    ),
}


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_a_bad_setting_is_exit_2_with_or_without_debug(cli: Cli, case: str, debug: bool) -> None:
    env, name = BAD_SETTINGS[case]
    args = ["--debug"] if debug else []
    run = cli(*args, "push", "demo-1", cli.sandbox.video_url("demo-1"), extra_env=env)
    assert run.code == 2, run.stderr
    if debug:
        assert "Traceback" in run.stderr
        assert run.stderr.rstrip().splitlines()[-1].startswith("error: ")
        assert name in run.stderr.rstrip().splitlines()[-1]
    else:
        assert name in one_sentence(run)
    assert "s3cret" not in run.stderr + run.stdout
    assert cli.sandbox.tencent.received_urls() == []


def test_a_dotenv_that_is_not_utf8_is_exit_2(cli: Cli) -> None:
    (cli.workdir / ".env").write_bytes(b"CDN_HOST=\xff\xfe\n")
    run = cli("status")
    assert run.code == 2
    assert ".env" in one_sentence(run)


def test_a_json_line_nested_100000_deep_is_reported_and_the_file_goes_on(cli: Cli) -> None:
    good = cli.sandbox.video_url("demo-1")
    deep = '{"video_id": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [deep, f'{{"video_id": "demo-1", "m3u8_url": "{good}"}}']
    (cli.workdir / "videos.jsonl").write_text("\n".join(lines) + "\n")
    run = cli("batch", "videos.jsonl")
    assert run.code == 2, run.stderr
    assert "videos.jsonl:1: JSON nested too deeply" in run.stderr
    assert "Traceback" not in run.stderr
    assert ledger_videos(cli) == ["demo-1"]
    assert cli.status("demo-1")["total"]["done"] > 0


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_a_wrong_key_is_exit_2_like_every_configuration_error(cli: Cli, debug: bool) -> None:
    args = ["--debug"] if debug else []
    run = cli(
        *args, "push", "demo-1", cli.sandbox.video_url("demo-1"),
        extra_env={"TENCENT_SECRET_KEY": WRONG_KEY},
    )  # fmt: skip
    assert run.code == 2, run.stderr
    assert "TENCENT_SECRET_KEY" in run.stderr.rstrip().splitlines()[-1]
    assert WRONG_KEY not in run.stderr + run.stdout
    assert ("Traceback" in run.stderr) is debug
    assert ledger_videos(cli) == []


def test_reset_with_a_wrong_key_leaves_the_video_record_intact(cli: Cli) -> None:
    url = cli.sandbox.video_url("demo-1")
    assert cli("push", "demo-1", url).code == 0
    before = cli.status("demo-1")
    run = cli("push", "demo-1", url, "--reset", extra_env={"TENCENT_SECRET_KEY": WRONG_KEY})
    assert run.code == 2
    assert "TENCENT_SECRET_KEY" in one_sentence(run)
    assert cli.status("demo-1") == before
    assert before["total"]["done"] > 0


def test_a_directory_in_place_of_the_ledger_is_exit_2(cli: Cli) -> None:
    (cli.workdir / "ledger.sqlite3").mkdir()
    run = cli("status")
    assert run.code == 2
    assert "CDN_PREHEAT_DB" in one_sentence(run)


def test_an_id_with_digits_close_to_a_command_is_still_the_old_form(cli: Cli) -> None:
    run = cli("push2", cli.sandbox.video_url("demo-1"))
    assert run.code == 0, run.stderr
    assert ledger_videos(cli) == ["push2"]
