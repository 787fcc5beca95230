"""The README runs: every Python block, and every block marked ``<!-- readme-test -->``, against the local servers.

The README's examples name a shop database on other hosts; here the same names reach
a database of this test's own on the local PostgreSQL and MariaDB, and an S3 bucket on
moto (the substitutions below, nothing else changes). The blocks of one section run
in order in one folder, as a reader following along would run them: a YAML block
marked ``<!-- readme-test: rivet.yaml -->`` is written to that file first (a section
without one gets the Quickstart's).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.conftest import MYSQL_URL, PG_URL, my_query

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(
    r"(?:<!-- readme-test(?::\s*(?P<file>[^\s>]+))? -->\n)?"  # the marker, when there is one
    r"^(?P<indent>[ \t]*)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)
HEADING = re.compile(r"^#{2,4} (.+)$", re.MULTILINE)


@dataclass
class Block:
    line: int
    lang: str
    body: str
    marked: bool
    file: str | None


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def runs(self) -> bool:
        return any(b.lang == "python" or (b.marked and b.lang in ("bash", "sh")) for b in self.blocks)


def sections() -> list[Section]:
    text = README.read_text(encoding="utf-8")
    headings = [(m.start(), m.group(1).strip()) for m in HEADING.finditer(text)]
    found: dict[str, Section] = {}
    for m in BLOCK.finditer(text):
        title = next((t for at, t in reversed(headings) if at < m.start()), "top")
        body = textwrap.dedent("\n".join(line.removeprefix(m.group("indent")) for line in m.group("body").splitlines()))
        block = Block(text.count("\n", 0, m.start("indent")) + 1, m.group("lang"), body, m.group(0).startswith("<!--"),
                      m.group("file"))  # fmt: skip
        found.setdefault(title, Section(title)).blocks.append(block)
    return [s for s in found.values() if s.runs]


@dataclass(frozen=True)
class World:
    """The README's names, as they are reached here."""

    names: dict[str, str]
    env: dict[str, str]

    def local(self, text: str) -> str:
        for readme, here in self.names.items():
            text = text.replace(readme, here)
        return text


def _pg_database(name: str) -> str:
    base, _, _ = PG_URL.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}?sslmode=disable"


@pytest.fixture(scope="module")
def world(pg_conn: psycopg.Connection, my_conn, s3_endpoint: str) -> Iterator[World]:
    name = f"rivet_readme_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(f"CREATE DATABASE {name}")
    pg_url = _pg_database(name)
    with psycopg.connect(pg_url, autocommit=True) as shop:
        shop.execute(
            "CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL, total numeric(10,2) NOT NULL, "
            "placed_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);"
            "INSERT INTO orders (customer_id, total, placed_at, updated_at) SELECT i % 100, i * 1.25, "
            "timestamptz '2023-12-01 00:00:00+00' + i * interval '1 hour', now() FROM generate_series(1, 2000) i;"
            "CREATE TABLE customers (id int PRIMARY KEY, name text, lifetime_value numeric(12,2));"
            "INSERT INTO customers SELECT i, 'customer ' || i, i * 250 FROM generate_series(1, 100) i;"
            "CREATE TABLE events (id bigint PRIMARY KEY, region text, created_at timestamptz NOT NULL);"
            "INSERT INTO events SELECT i, (ARRAY['eu', 'us', ''])[1 + i % 3], "
            "timestamptz '2024-01-30 00:00:00+00' + i * interval '1 hour' FROM generate_series(1, 300) i;"
        )
    my_query(my_conn, f"CREATE DATABASE {name}")
    my_query(my_conn, f"CREATE TABLE {name}.events (id INT PRIMARY KEY, kind VARCHAR(10))")
    my_query(my_conn, f"INSERT INTO {name}.events VALUES (1, 'view'), (2, 'buy'), (3, 'view')")
    import boto3

    bucket = f"rivet-readme-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=bucket)  # fmt: skip
    mysql_url = f"{MYSQL_URL.rsplit('/', 1)[0]}/{name}"
    try:
        yield World(
            names={
                "postgresql://app@db.internal:5432/shop": pg_url,
                "postgresql://reader@db.internal/shop": pg_url,
                "postgresql://reader@db/shop": pg_url,
                "mysql://reader@db/shop": mysql_url,
                "s3://lake/": f"s3://{bucket}/",
            },
            env={
                "DATABASE_URL": pg_url,
                "RIVET_SOURCE_URL": pg_url,
                "AWS_ENDPOINT_URL": s3_endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            },
        )
    finally:
        pg_conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        my_query(my_conn, f"DROP DATABASE {name}")


QUICKSTART = next(b for s in sections() for b in s.blocks if b.file == "rivet.yaml")


@pytest.mark.postgres
@pytest.mark.mysql
@pytest.mark.s3
@pytest.mark.parametrize("section", sections(), ids=lambda s: s.title)
def test_a_readme_section_runs_as_written(section: Section, world: World, tmp_path: Path) -> None:
    if not any(b.file == "rivet.yaml" or "rivet init" in b.body for b in section.blocks):
        (tmp_path / "rivet.yaml").write_text(world.local(QUICKSTART.body))  # the reader's config, from Quickstart
    env = {**os.environ, **world.env}
    for n, block in enumerate(section.blocks):
        code = world.local(block.body)
        if block.file is not None:
            (tmp_path / block.file).write_text(code)
            continue
        if block.lang == "python":
            script = tmp_path / f"readme_{block.line}.py"
            script.write_text(code)
            ran = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=300)  # fmt: skip
        elif block.marked and block.lang in ("bash", "sh"):
            ran = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
        else:
            continue
        assert ran.returncode == 0, f"README.md line {block.line} (block {n} of {section.title}):\n{ran.stderr}"
