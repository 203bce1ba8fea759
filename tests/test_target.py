"""The target and the key: the track URL, the source id kept as digits, and a secret that
never shows in a repr, an error or a redacted text."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from uploader.errors import ConfigError
from uploader.target import Credentials, Target

KEY = "pk_live42.s3cr3t-Value_xyz0123456789"
PREFIX, SECRET = KEY.split(".")
TOKEN = base64.b64encode(f"{PREFIX}:{SECRET}".encode()).decode()
CREDENTIALS = Credentials.from_key(KEY)
SOURCE = "7301234567890123456"
TARGET = Target("https://api.test", "acme org/eu", "shop&co?", SOURCE)


def test_authorization_is_basic_of_prefix_and_secret() -> None:
    assert CREDENTIALS.authorization == f"Basic {TOKEN}"
    assert (CREDENTIALS.prefix, CREDENTIALS.secret) == (PREFIX, SECRET)
    assert Credentials.from_key(KEY + "\n") == CREDENTIALS  # a key file's final newline


def test_credentials_repr_and_str_hide_the_secret() -> None:
    for text in (repr(CREDENTIALS), str(CREDENTIALS), f"{CREDENTIALS}", repr([CREDENTIALS])):
        assert SECRET not in text
        assert TOKEN not in text
        assert PREFIX in text


@pytest.mark.parametrize(
    "key",
    [
        "",
        "nodot",
        ".secretonly",
        "prefixonly.",
        "pre fix.secret",
        "pre:fix.secret",
        "prefix7.sec ret",
    ],
)
def test_malformed_key_is_refused_without_quoting_it(key: str) -> None:
    with pytest.raises(ConfigError, match=r"PREFIX\.SECRET") as caught:
        Credentials.from_key(key)
    for piece in key.split("."):
        if piece:
            assert piece not in str(caught.value)


def test_redact_removes_key_secret_and_token() -> None:
    text = (
        f"key={KEY} secret={SECRET} header=Basic {TOKEN} url=?apiKey={quote(KEY, safe='')} "
        f"again {SECRET}{SECRET}"
    )
    clean = CREDENTIALS.redact(text)
    for form in (KEY, SECRET, TOKEN, quote(KEY, safe="")):
        assert form not in clean
    assert "<redacted>" in clean
    assert CREDENTIALS.redact("nothing secret here") == "nothing secret here"


def test_track_url_encodes_org_and_project_and_keeps_the_source_id() -> None:
    assert TARGET.track_url == (
        f"https://api.test/v1/acme%20org%2Feu/projects/shop%26co%3F/sources/{SOURCE}/track"
    )
    assert Target("http://127.0.0.1:8080/", "o", "p", "1").track_url == (
        "http://127.0.0.1:8080/v1/o/projects/p/sources/1/track"
    )


@pytest.mark.parametrize(
    "source", ["", "12.5", "7.301234567890124e+18", "abc", "\uff11\uff12\uff13", " 1"]
)
def test_source_id_must_be_digits(source: str) -> None:
    with pytest.raises(ConfigError, match="source id"):
        Target("https://api.test", "o", "p", source)


def test_source_id_must_be_a_string() -> None:
    with pytest.raises(ConfigError, match="string of digits"):
        Target("https://api.test", "o", "p", 7301234567890123456)  # type: ignore[arg-type]


def test_base_url_needs_a_scheme() -> None:
    with pytest.raises(ConfigError, match="https://"):
        Target("api.intempt.com", "o", "p", SOURCE)
