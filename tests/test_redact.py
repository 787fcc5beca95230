"""The one redactor: passwords with any characters, DSNs, and URLs that carry tokens."""

from __future__ import annotations

import pytest

from rivet.core.redact import redact_text, redact_url
from rivet.storage.destinations import DestinationSpec

SECRET = "Sec/ret@:?#1"
# A token in a query string is percent-encoded or base64: '#' would end the URL, '&' the value.
TOKEN = "Ab/cd+ef9Gh=="


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET}@h:5432/d",
        "postgresql://u:p@ss@h/d",
        f"mysql://u:{SECRET}@h/d?ssl-mode=REQUIRED",
        f"postgresql://u@h/d?sslmode=require&password={TOKEN}",
        f"host=h user=u password='{SECRET}' dbname=d",
        f"host=h password={SECRET} dbname=d",
        f"https://acct.blob.core.windows.net/c/p?sv=2022-11-02&sig={TOKEN}&se=2030",
        f"https://bucket.s3.amazonaws.com/k?X-Amz-Credential=AK/{TOKEN}&X-Amz-Signature={TOKEN}",
        f"sftp://user:{SECRET}@host/path",
    ],
)
def test_no_part_of_a_secret_survives(url: str) -> None:
    shown = redact_url(url)
    for fragment in (SECRET, "ret@", ":?#1", TOKEN, "ef9Gh", "ss@h"):
        assert fragment not in shown, shown
    assert "***" in shown


def test_hosts_and_databases_stay_readable() -> None:
    assert redact_url("postgresql://u:pw@db.internal:5432/shop?sslmode=require") == (
        "postgresql://u:***@db.internal:5432/shop?sslmode=require"
    )
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_free_text_and_destinations() -> None:
    message = f"could not open https://a.blob.core.windows.net/c?sig={TOKEN} for postgresql://u:{SECRET}@h/d"
    assert SECRET not in redact_text(message) and TOKEN not in redact_text(message)
    assert "hunter2" not in redact_text("the server said: password=hunter2 is wrong")
    spec = DestinationSpec(f"https://a.blob.core.windows.net/c/p?sig={TOKEN}", {"account_key": SECRET})
    assert SECRET not in repr(spec) + spec.shown and TOKEN not in repr(spec) + spec.shown


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("could not connect to postgresql://u:pa ss word@db.internal:5432/shop", "ss word"),
        ("clone https://ghp_0123456789abcdefghijKLMN@github.com/o/r.git failed", "ghp_0123456789abcdefghijKLMN"),
        ("mysql://AKIA0123456789ABCDEFGH@db/x", "AKIA0123456789ABCDEFGH"),
        ("posting to https://hooks.slack.com/services/T0A1B2C3/B0A1B2C3/Xy7Zq9Wv8Ut6Sr5Pq4On3Ml2 failed", "Xy7Zq9Wv"),
        ("https://discord.com/api/webhooks/1234567890/aBcDeFgHiJ-kLmNoPqRsTuV", "aBcDeFgHiJ"),
        ("https://hooks.example.com/v1/AbCdEf0123456789GhIjKl/notify", "AbCdEf0123456789GhIjKl"),
    ],
    ids=["spaced-password", "token-as-user", "key-as-user", "slack-path", "discord-path", "token-segment"],
)
def test_secrets_in_user_names_paths_and_spaced_passwords_are_hidden(text: str, secret: str) -> None:
    shown = redact_text(text)
    assert secret not in shown and "***" in shown, shown


def test_what_identifies_a_place_stays_readable() -> None:
    kept = [
        "postgresql://reader@db.internal/shop",
        "https://acct.blob.core.windows.net/c/exports/orders_20261203_181051_819_chunk00000.parquet",
        "s3://lake/raw/orders/2026-12-03/orders_20261203_181051_819.parquet",
    ]
    assert [redact_text(t) for t in kept] == kept
