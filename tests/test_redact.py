"""Secrets are masked in messages and log records, whatever carries them (issue 10, item 10)."""

from __future__ import annotations

import logging

import pytest

from cdn_preheat import redact
from cdn_preheat.config import check_mongodb_uri, mongodb_secrets


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "Authorization: TC3-HMAC-SHA256 Credential=AKIDxyz0123/2026-12-01/cdn/tc3_request, "
            "SignedHeaders=content-type;host, Signature=4533882e9fb0557eb414822590613d44",
            "4533882e9fb0557eb414822590613d44",
        ),
        ("Credential=AKIDxyz0123/2026-12-01/cdn/tc3_request", "AKIDxyz0123"),
        ("{'Authorization': 'QBox ak-123:c2lnbmF0dXJl'}", "c2lnbmF0dXJl"),
        ("GET /?AccessKeyId=LTAIabc&Signature=zz%2Fyy&Action=Push", "LTAIabc"),
        ("GET /?AccessKeyId=LTAIabc&Signature=zz%2Fyy&Action=Push", "zz%2Fyy"),
        ("https://bucket.example.com/a.m3u8?e=1700000000&token=ak:sig-abc", "sig-abc"),
        ("fetching http://bob:pa@ss/word@origin.example.com/x.m3u8 failed", "pa@ss/word"),
        ("mongodb://u:p@ss@h:1/db", "p@ss"),
    ],
)
def test_patterns_mask_credentials(text: str, secret: str) -> None:
    assert secret not in redact.redact(text)


def test_registered_secrets_are_masked_in_every_form() -> None:
    redact.register("my s3cret/key")
    masked = redact.redact("a my s3cret/key b my%20s3cret%2Fkey c my+s3cret%2Fkey")
    assert "s3cret" not in masked


def test_a_urls_userinfo_is_stripped_by_rfc_3986() -> None:
    assert redact.strip_userinfo("http://u:p@h:8/x@y?z") == "http://h:8/x@y?z"
    assert redact.strip_userinfo("https://h/a.m3u8") == "https://h/a.m3u8"


def test_the_logging_filter_masks_arguments_and_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("tencentcloud_sdk_common")
    caplog.handler.addFilter(redact.RedactingFilter())
    try:
        raise ValueError("Signature=deadbeefdeadbeef")
    except ValueError:
        logger.error("headers %s", {"Authorization": "QBox ak:secretsig"}, exc_info=True)
    assert "secretsig" not in caplog.text
    assert "deadbeefdeadbeef" not in caplog.text


@pytest.mark.parametrize(
    "uri",
    ["mongodb://u:p@ss@h/db", "mongodb://u:pa/ss@h/db", "mongodb://h:0", "mongodb://h:x1",
     "postgres://h/db", "mongodb+srv://c.example.com:27017/db", "mongodb://"],
)  # fmt: skip
def test_malformed_mongodb_uris_are_refused_without_their_password(uri: str) -> None:
    with pytest.raises(ValueError) as info:
        check_mongodb_uri(uri)
    assert "ss" not in str(info.value).replace("password", "").replace("host", "")


@pytest.mark.parametrize(
    "uri",
    ["mongodb://h", "mongodb://u:p%40ss@h1:27017,h2:27018/db?replicaSet=rs",
     "mongodb+srv://u:p@cluster.example.com/db", "mongodb://[::1]:27017"],
)  # fmt: skip
def test_wellformed_mongodb_uris_pass(uri: str) -> None:
    check_mongodb_uri(uri)


def test_the_password_is_found_whatever_the_uris_shape() -> None:
    assert "p@ss/x" in mongodb_secrets("mongodb://u:p@ss/x@h/db")
