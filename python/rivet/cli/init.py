"""``rivet init``: write a rivet.yaml from a live database's catalog."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer

from rivet.cli._output import report_error, say

SOURCE_VARIABLE = "RIVET_SOURCE_URL"


def init_command(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            envvar=SOURCE_VARIABLE,
            help=f"postgresql://, mysql:// or sqlite:/// URL, or a SQLite file (default: ${SOURCE_VARIABLE}).",
            show_envvar=False,
        ),
    ],
    discover: Annotated[
        bool, typer.Option("--discover", help="Choose each export's mode from the catalog (else: full).")
    ] = False,
    schema: Annotated[
        str | None, typer.Option("--schema", help="The schema (PostgreSQL: public; MySQL: the URL's database).")
    ] = None,
    table: Annotated[list[str] | None, typer.Option("--table", "-t", help="Only this table (repeatable).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the config ('-': stdout).")] = Path(
        "rivet.yaml"
    ),
    url_env: Annotated[
        str, typer.Option("--url-env", help="The environment variable the config reads the URL from.")
    ] = SOURCE_VARIABLE,
    chunk_above: Annotated[
        int, typer.Option("--chunk-above", min=1, help="With --discover: chunk tables estimated above this many rows.")
    ] = 1_000_000,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file.")] = False,
) -> None:
    """Write a rivet.yaml with one export per table of a live database.

    With --discover each export's mode is chosen from the catalog (no rows are read): incremental on a
    change timestamp or an append-only key, chunked for large tables with an integer key, else full;
    columns that cannot be exported exactly are read as text. The URL stays in an environment variable.
    """
    from rivet.app.discover import propose, read_catalog, render_config
    from rivet.config import parse_config
    from rivet.core.redact import redact_url
    from rivet.errors import ConfigError

    to_stdout = str(output) == "-"
    try:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", url_env):
            raise ConfigError(f"--url-env: '{url_env}' is not an environment variable name")
        if not to_stdout and output.exists() and not force:
            raise FileExistsError(f"{output} exists: choose another --output, or --force to replace it")
        settings, reader, tables = read_catalog(source, schema, table)
        if not tables:
            raise LookupError(f"no tables found in {redact_url(source)}" + (f" schema {schema}" if schema else ""))
        out_dir = Path.cwd() if to_stdout else output.resolve().parent
        server = reader.catalog.capabilities.server
        if not server:  # a file: its path relative to the config
            settings["path"] = os.path.relpath(Path(settings["path"]).resolve(), out_dir)
        taken: set[str] = set()
        proposals = [propose(t, reader, discover=discover, chunk_above=chunk_above, taken=taken) for t in tables]
        text = render_config(settings, proposals, url_env=url_env, shown_url=redact_url(source), out_dir="out")
        parse_config(text, base_dir=out_dir, offline=True)  # what is written loads as is
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None
    if to_stdout:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    say(f"✓ wrote {output}: {len(proposals)} export(s)")
    if server and not os.environ.get(url_env):
        say(f"  set {url_env} to the source URL where rivet runs, then: rivet doctor -c {output}")
