"""``freshness:`` and ``rivet check --freshness``: each export's age since its last published run, from the
state store alone, against its limits (its own, else ``defaults.freshness``); exit 0, 5 (warn) or 1 (error)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rivet.config.sizes import parse_duration
from tests.outputs import run_rivet, write_config

STATE = ".rivet_state.db"


def config(home: Path) -> Path:
    with sqlite3.connect(home / "shop.db") as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO items VALUES (1)")
    exports = [
        {"name": name, "table": "items", "destination": str(home / "out" / name)} for name in ("a", "b", "c")
    ] + [{"name": "d", "table": "items", "destination": str(home / "out" / "d"), "freshness": {"warn_after": "1d"}}]
    return write_config(
        home,
        {"type": "sqlite", "path": str(home / "shop.db")},
        exports,
        extra="defaults:\n  freshness: {warn_after: 2h, error_after: 6h}\n",
    )


def age(home: Path, export: str, hours: float) -> None:
    """Make ``export``'s runs ``hours`` older in the state store, as if they ran then."""
    started = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with sqlite3.connect(home / STATE) as db:
        db.execute("UPDATE export_runs SET started_at = ? WHERE export_name = ?", (started, export))


def verdicts(home: Path, *args: str) -> tuple[int, dict[str, str]]:
    checked = run_rivet("check", "-c", str(home / "rivet.yaml"), "--freshness", "--json", *args)
    return checked.returncode, {e["export"]: e["status"] for e in json.loads(checked.stdout)["exports"]}


def test_each_export_is_fresh_or_stale_past_its_limits(tmp_path):
    rivet_yaml = config(tmp_path)
    ran = run_rivet("run", "-c", str(rivet_yaml), "-e", "a", "-e", "b", "-e", "c")
    assert ran.returncode == 0, ran.stderr
    assert verdicts(tmp_path, "-e", "a", "-e", "b", "-e", "c") == (0, {"a": "fresh", "b": "fresh", "c": "fresh"})
    age(tmp_path, "b", 3)
    age(tmp_path, "c", 7)
    # d never published, and has only a warn_after of its own.
    code, found = verdicts(tmp_path)
    assert (code, found) == (1, {"a": "fresh", "b": "warn", "c": "error", "d": "warn"})
    assert verdicts(tmp_path, "-e", "a", "-e", "b") == (5, {"a": "fresh", "b": "warn"})
    # The same verdicts for a scraper.
    scraped = run_rivet("metrics", "-c", str(rivet_yaml), "--format", "prometheus").stdout
    status = {
        sample.labels["export"]: sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "rivet_export_freshness_status"
    }
    assert status == {"a": 0, "b": 1, "c": 2, "d": 1}
    said = run_rivet("check", "-c", str(rivet_yaml), "--freshness")
    assert said.returncode == 1
    assert "c: stale (error): its last published run started" in said.stderr and "error after 6 h" in said.stderr
    assert "d: warn: never published (warn after 1 d)" in said.stderr
    # A new run makes it fresh again; the source is never read by the check.
    assert run_rivet("run", "-c", str(rivet_yaml), "-e", "c").returncode == 0
    (tmp_path / "shop.db").unlink()
    assert verdicts(tmp_path, "-e", "c") == (0, {"c": "fresh"})


@pytest.mark.parametrize(
    ("freshness", "expected"),
    [
        ({"warn_after": "6h", "error_after": "2h"}, "warn_after must be shorter than error_after"),
        ({"warn_after": "2 hours"}, "not a duration: '2 hours'"),
        ({}, "freshness needs warn_after, error_after or both"),
    ],
)
def test_freshness_limits_are_checked_with_the_config(tmp_path, freshness, expected):
    export = {"name": "a", "table": "t", "destination": "out", "freshness": freshness}
    rivet_yaml = write_config(tmp_path, {"type": "sqlite", "path": "x.db"}, [export])
    refused = run_rivet("check", "-c", str(rivet_yaml), "--freshness")
    assert refused.returncode == 2 and expected in refused.stderr


@pytest.mark.parametrize(
    ("text", "seconds"), [("45s", 45), ("30m", 1800), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), (90, 90)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2 hours", "h", "-1h", "0s", "1x", ""])
def test_what_is_not_a_duration(text):
    with pytest.raises(ValueError):
        parse_duration(text)
