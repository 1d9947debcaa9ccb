"""The front door: typos, bad input and bad settings are one sentence, the promised
exit code, and a ledger left as it was (issue 10, items 2 and 9)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from clirun import Cli, Run, base_env

from cdn_preheat.sandbox.server import Sandbox

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


def test_batch_lines_that_are_json_arrays_or_tab_separated_say_what_is_wrong(cli: Cli) -> None:
    good = cli.sandbox.video_url("demo-1")
    lines = ["[1, 2]", f"ep-1\t{good}", f"ep-2 {good}", f"demo-1,{good}"]
    (cli.workdir / "videos.csv").write_text("\n".join(lines) + "\n")
    run = cli("batch", "videos.csv")
    assert run.code == 2
    assert "videos.csv:1: expected a JSON object with video_id and m3u8_url" in run.stderr
    for number in (2, 3):
        assert (
            f"videos.csv:{number}: expected 2 fields video_id,m3u8_url, found 1"
            " (separate them with a comma, not a tab or spaces)"
        ) in run.stderr
    assert ledger_videos(cli) == ["demo-1"]  # the good line is queued and pushed


def test_a_negative_sample_is_exit_2(cli: Cli) -> None:
    run = cli("verify", "demo-1", "--sample", "-5")
    assert run.code == 2
    assert "--sample" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["verify", "demo-1", "--sample", "-5"], "invalid value for '--sample'"),
        (["push"], "missing argument 'video_id'"),
        (["push", "demo-1", "--nope"], "no such option: --nope"),
        (["status", "demo-1", "demo-2"], "unexpected extra argument"),
    ],
    ids=["negative-sample", "missing-argument", "unknown-option", "extra-argument"],
)
def test_a_usage_error_is_one_sentence_naming_the_commands_help(
    cli: Cli, args: list[str], words: str
) -> None:
    run = cli(*args)
    assert run.code == 2
    message = one_sentence(run)
    assert words in message
    assert message.endswith(f"; see 'cdn-preheat {args[0]} --help'.")
    assert "Usage:" not in run.stderr  # Click's usage block, not a sentence
    assert cli.sandbox.tencent.received_urls() == []


def test_the_old_form_without_a_url_second_says_what_it_needs(cli: Cli) -> None:
    run = cli("ep-101", "not-a-url")
    assert run.code == 2
    assert one_sentence(run) == (
        "error: no such command 'ep-101'; the old form VIDEO_ID M3U8_URL needs an http(s)"
        " URL second, not 'not-a-url'."
    )
    assert ledger_videos(cli) == []


def test_the_command_alone_still_shows_the_help(cli: Cli) -> None:
    run = cli()
    assert run.code == 2
    assert "Usage: cdn-preheat" in run.stdout + run.stderr
    assert "push" in run.stdout + run.stderr


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


@pytest.mark.parametrize("value", ["[1, 2]", "3", '"x"'])
def test_headers_that_are_json_but_not_an_object_say_so(cli: Cli, value: str) -> None:
    run = cli(
        "push", "demo-1", cli.sandbox.video_url("demo-1"), extra_env={"TENCENT_HEADERS": value}
    )
    assert run.code == 2
    assert one_sentence(run) == (
        "error: TENCENT_HEADERS is invalid: it must be a JSON object,"
        """ e.g. TENCENT_HEADERS='{"Name": "value"}'."""
    )
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


@pytest.mark.parametrize("command", ["status", "push"])
def test_a_ledger_path_that_is_not_a_regular_file_is_exit_2(cli: Cli, command: str) -> None:
    args = ["push", "demo-1", cli.sandbox.video_url("demo-1")] if command == "push" else [command]
    run = cli(*args, extra_env={"CDN_PREHEAT_DB": "/dev/null"})
    assert run.code == 2, run.stderr
    assert "/dev/null is not a regular file; set CDN_PREHEAT_DB" in one_sentence(run)
    assert cli.sandbox.tencent.received_urls() == []


@pytest.mark.parametrize("command", ["status", "quota"])
def test_an_empty_ledger_file_reads_as_an_empty_ledger_and_stays_empty(
    cli: Cli, command: str
) -> None:
    path = cli.workdir / "ledger.sqlite3"
    path.touch()  # e.g. a volume prepared with `touch`, or a push killed at once
    run = cli(command, "--json")
    assert run.code == 0, run.stderr
    if command == "status":
        assert run.json()["videos"] == []
    else:
        assert run.json()["reserved_in_flight"] == 0
    assert path.stat().st_size == 0
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    assert ledger_videos(cli) == ["demo-1"]


def test_a_cdn_host_the_account_does_not_have_is_exit_2_and_the_urls_stay_queued(
    cli: Cli,
) -> None:
    run = cli(
        "push", "demo-1", cli.sandbox.video_url("demo-1"),
        extra_env={"CDN_HOST": "not-ours.example.com"},
    )  # fmt: skip
    assert run.code == 2, run.stderr
    assert "Traceback" not in run.stderr
    message = run.stderr.strip().splitlines()[-1]  # after the run's summary
    assert message.startswith("error: not-ours.example.com is not a CDN domain"), message
    assert "CDN_HOST" in message
    total = cli.status("demo-1")["total"]
    assert total["pending"] > 0
    assert total["reserved"] == total["invalid"] == total["done"] == 0


def test_an_id_with_digits_close_to_a_command_is_still_the_old_form(cli: Cli) -> None:
    run = cli("push2", cli.sandbox.video_url("demo-1"))
    assert run.code == 0, run.stderr
    assert ledger_videos(cli) == ["push2"]


# Item 10: secrets and foreign files -------------------------------------------
PLAYLIST_PASSWORD = "hunter2-origin-pw"


def with_userinfo(url: str) -> str:
    return url.replace("://", f"://bob:{PLAYLIST_PASSWORD}@", 1)


@pytest.mark.parametrize("provider", ["tencent", "qiniu", "aliyun", "edgeone"])
def test_debug_never_prints_keys_signatures_or_playlist_credentials(
    sandbox: Sandbox, tmp_path: Path, provider: str
) -> None:
    cli = Cli(sandbox, tmp_path, {**base_env(tmp_path), **sandbox.client_env(provider)})
    secrets = [
        value
        for name, value in cli.env.items()
        if name.endswith(("_SECRET_ID", "_SECRET_KEY", "_ACCESS_KEY", "_KEY_ID", "_KEY_SECRET"))
    ]
    assert len(secrets) >= 2
    run = cli("--debug", "push", "demo-1", with_userinfo(sandbox.video_url("demo-1")), "--json")
    assert run.code == 0, run.stderr
    assert " DEBUG " in run.stderr  # the SDKs' debug logs are shown, masked
    shown = run.stdout + run.stderr
    for secret in secrets:
        assert secret not in shown
    assert PLAYLIST_PASSWORD not in shown
    assert re.search(r"Signature=[0-9a-f]{16}", shown) is None
    assert re.search(r"Credential=AKID", shown) is None
    assert re.search(r"(?i)authorization['\"]?\s*[:=]\s*['\"]?(TC3|QBox|acs)", shown) is None
    ledger = (tmp_path / "ledger.sqlite3").read_bytes()
    assert PLAYLIST_PASSWORD.encode() not in ledger
    assert run.json()["m3u8_url"] == sandbox.video_url("demo-1")


def test_playlist_credentials_are_neither_printed_nor_pushed(cli: Cli) -> None:
    url = with_userinfo(cli.sandbox.video_url("demo-1"))
    run = cli("expand", url, extra_env={"CDN_HOST": ""})
    assert run.code == 0, run.stderr
    assert run.stdout.startswith(cli.sandbox.video_url("demo-1"))
    assert PLAYLIST_PASSWORD not in run.stdout + run.stderr
    missing = cli("push", "x", url.replace("master.m3u8", "gone.m3u8"))
    assert missing.code == 2
    assert PLAYLIST_PASSWORD not in missing.stdout + missing.stderr
    assert "gone.m3u8" in missing.stderr


def test_an_unreachable_mongodb_never_prints_its_password(cli: Cli) -> None:
    run = cli(
        "status",
        extra_env={
            "MONGODB_URI": "mongodb://preheat:s3cret%40pw-x@127.0.0.1:1/cdn_preheat",
            "CDN_PREHEAT_MONGO_CONNECT_TIMEOUT": "0.2",
        },
    )
    assert run.code == 1
    message = one_sentence(run)
    assert "127.0.0.1:1" in message
    assert "s3cret" not in message and "pw-x" not in message


def foreign_database(path: Path) -> bytes:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO photos (name) VALUES ('cat.jpg')")
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize("command", ["status", "push", "quota"])
def test_another_applications_sqlite_file_is_refused_untouched(cli: Cli, command: str) -> None:
    path = cli.workdir / "ledger.sqlite3"
    before = foreign_database(path)
    args = ["push", "demo-1", cli.sandbox.video_url("demo-1")] if command == "push" else [command]
    run = cli(*args)
    assert run.code == 2
    assert "another application's SQLite database" in one_sentence(run)
    assert path.read_bytes() == before
    assert not (cli.workdir / "ledger.sqlite3-wal").exists()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert cli.sandbox.tencent.received_urls() == []


def test_a_ledger_written_before_application_id_still_opens(cli: Cli) -> None:
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    path = cli.workdir / "ledger.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA application_id = 0")
    db.close()
    assert cli.status("demo-1")["total"]["done"] > 0
    assert cli("push", "demo-2", cli.sandbox.video_url("demo-2")).code == 0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] != 0
    db.close()


def test_status_and_quota_answer_while_a_writer_holds_the_lock(cli: Cli) -> None:
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    expected = cli.status()
    writer = sqlite3.connect(cli.workdir / "ledger.sqlite3", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # what a worker holds while it claims
        writer.execute("UPDATE counters SET value = value + 1 WHERE name = 'seq'")
        env = {"CDN_PREHEAT_LOCK_TIMEOUT": "3"}
        status = cli("status", "--json", extra_env=env)
        assert status.code == 0, status.stderr
        assert status.json() == expected
        quota = cli("quota", "--json", extra_env=env)
        assert quota.code == 0, quota.stderr
        assert quota.json()["reserved_in_flight"] == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_status_without_a_ledger_creates_none(cli: Cli) -> None:
    run = cli("status", "--json")
    assert run.code == 0, run.stderr
    assert run.json()["videos"] == []
    assert not (cli.workdir / "ledger.sqlite3").exists()


# Item 11: output that tells the truth --------------------------------------------
def test_a_purge_larger_than_the_quota_left_purges_what_fits(cli: Cli) -> None:
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    total = cli.status("demo-1")["total"]["done"]
    assert total > 13
    cli.sandbox.tencent.limits.purge_url_per_day = 13
    run = cli("purge", "--video", "demo-1", "--json")
    assert run.code == 3, run.stderr
    report = run.json()
    assert report["submitted"] == 13
    assert report["done"] == 13
    assert report["not_submitted"] == total - 13
    assert len(report["left"]) == total - 13
    assert cli.sandbox.tencent.quota_used("mainland", "url") == 13
    message = run.stderr.strip().splitlines()[-1]
    assert f"13 of {total}" in message and "quota" in message


@pytest.mark.parametrize("provider", ["tencent", "edgeone"])
def test_purging_a_url_on_a_host_the_account_lacks_is_bad_input(
    sandbox: Sandbox, tmp_path: Path, provider: str
) -> None:
    cli = Cli(sandbox, tmp_path, {**base_env(tmp_path), **sandbox.client_env(provider)})
    run = cli("purge", "https://other.example.com/vod/x.ts")
    assert run.code == 2, run.stderr
    message = one_sentence(run)
    assert "other.example.com" in message and "not" in message
    assert message.endswith("Purge only URLs of the account's CDN domains.")


def test_dry_run_json_says_how_many_urls_a_push_would_send(cli: Cli) -> None:
    url = cli.sandbox.video_url("demo-1")
    first = cli("push", "demo-1", url, "--dry-run", "--json")
    assert first.code == 0, first.stderr
    found = first.json()["found"]
    assert first.json()["would_push"] == found > 0
    assert cli.sandbox.tencent.received_urls() == []
    assert not (cli.workdir / "ledger.sqlite3").exists()  # a dry run writes nothing
    assert cli("push", "demo-1", url).code == 0
    again = cli("push", "demo-1", url, "--dry-run", "--json").json()
    assert again["would_push"] == 0
    assert again["already_preheated"] is True


def test_dry_run_counts_urls_another_video_already_preheated(cli: Cli) -> None:
    # A re-upload under a new id, or renditions shared between titles: the push
    # sends none of the URLs already done, so the dry run must not say it would.
    url = cli.sandbox.video_url("demo-1")
    assert cli("push", "demo-1", url).code == 0
    ledger = (cli.workdir / "ledger.sqlite3").read_bytes()
    dry = cli("push", "ep-101", url, "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    assert dry.json()["would_push"] == 0
    assert dry.json()["already_done"] == dry.json()["found"] > 0
    assert (cli.workdir / "ledger.sqlite3").read_bytes() == ledger  # read only
    pushes = len(cli.sandbox.tencent.received())
    real = cli("push", "ep-101", url, "--json")
    assert real.code == 0, real.stderr
    assert real.json()["pushed"] == 0 and len(cli.sandbox.tencent.received()) == pushes


def test_a_dry_run_needs_no_keys(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if not k.startswith("TENCENT_")}
    run = Cli(cli.sandbox, cli.workdir, env)(
        "push", "demo-1", cli.sandbox.video_url("demo-1"), "--dry-run", "--json"
    )
    assert run.code == 0, run.stderr
    assert run.json()["would_push"] == run.json()["found"] > 0


@pytest.mark.parametrize("command", ["stats", "logs"])
def test_stats_and_logs_errors_name_the_domain_asked_about(cli: Cli, command: str) -> None:
    day = "2026-11-30"
    args = ["--from", day, "--to", day] if command == "stats" else ["--date", day]
    run = cli(command, "--domain", "not-ours.example.com", *args)
    assert run.code == 2  # a wrong --domain is bad input (README: exit 2)
    message = one_sentence(run)
    assert "not-ours.example.com" in message
    assert cli.sandbox.edge.netloc not in message  # CDN_HOST was not asked about


def test_a_video_whose_urls_all_ended_invalid_is_failed(cli: Cli) -> None:
    # No CDN_HOST: the origin's own host is not a domain of the CDN account, so
    # the CDN refuses every URL and each is isolated and marked invalid.
    run = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), extra_env={"CDN_HOST": ""})
    assert run.code == 1, run.stderr
    assert "refused as invalid" in run.stderr
    status = cli.status(
        "demo-1",
    )
    assert status["videos"][0]["state"] == "failed"
    assert status["total"]["invalid"] > 0 and status["total"]["done"] == 0


def test_a_video_with_urls_requeued_by_verify_is_queued_again(cli: Cli) -> None:
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    assert cli.status("demo-1")["videos"][0]["state"] == "done"
    cli.sandbox.cache.discard(cli.sandbox.edge_url("/vod/demo-1/v1/seg3.ts"))
    run = cli("verify", "demo-1", "--all", "--requeue", "--json")
    assert run.json()["requeued"] == 1
    status = cli.status("demo-1")
    assert status["videos"][0]["state"] == "queued"
    assert status["total"]["pending"] == 1
    again = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), "--json")  # not "preheated"
    assert again.code == 0, again.stderr
    assert again.json()["pushed"] == 1
    assert cli.status("demo-1")["videos"][0]["state"] == "done"


def test_quota_on_qiniu_shows_what_the_ledger_learned(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=4, task_delay=0.2, edge_vendor="qiniu") as box:
        cli = Cli(box, tmp_path, {**base_env(tmp_path), **box.client_env("qiniu")})
        before = cli("quota", "--json")
        assert before.code == 0, before.stderr
        assert before.json()["available"] is None  # Qiniu has no quota API
        push = cli("push", "demo-1", box.video_url("demo-1"), "--json")
        assert push.code == 0, push.stderr
        pushed = push.json()["pushed"]
        after = cli("quota", "--json")
        assert after.code == 0, after.stderr
        data = after.json()
        assert data["source"] == "ledger"
        assert data["total"] == box.qiniu.limits.prefetch_quota
        assert data["available"] == box.qiniu.limits.prefetch_quota - pushed


def test_tables_keep_every_cell_whole_when_stderr_is_not_a_terminal(cli: Cli) -> None:
    video_id = "premiere-2026-12-24-" + "x" * 40
    assert cli("push", video_id, cli.sandbox.video_url("demo-1")).code == 0
    env = {name: value for name, value in cli.env.items() if name != "COLUMNS"}
    run = Cli(cli.sandbox, cli.workdir, env)("status")  # a pipe, as in a log file
    assert run.code == 0, run.stderr
    assert "…" not in run.stderr
    assert video_id in run.stderr
    assert all(name in run.stderr for name in ("pending", "reserved", "submitted", "invalid"))


def test_the_progress_bar_goes_on_while_the_tasks_are_followed(cli: Cli) -> None:
    urls = cli("expand", cli.sandbox.video_url("demo-1")).stdout.split()
    # FORCE_COLOR makes Rich treat the pipe as a terminal, so the bar is drawn.
    run = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), extra_env={"FORCE_COLOR": "1"})
    assert run.code == 0, run.stderr
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", run.stderr)
    assert "pushing" in plain
    assert re.search(rf"following \d+ tasks: {len(urls)} done, 0 processing", plain), plain
