"""The ``rivet`` command. Modules here import the engine only inside commands, so ``--help`` stays fast."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rivet.cli import (
    changes,
    check,
    completions,
    demo,
    doctor,
    history,
    init,
    plan,
    reconcile,
    repair,
    run,
    schema,
    state,
    validate,
)
from rivet.core.version import __version__

app = typer.Typer(
    name="rivet",
    help="Export tables and queries from PostgreSQL, MySQL/MariaDB and SQLite to Parquet, CSV, Delta or Iceberg.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("run")(run.run_command)
app.command("check")(check.check_command)
app.command("doctor")(doctor.doctor_command)
app.command("init")(init.init_command)
app.command("demo")(demo.demo_command)
app.command("plan")(plan.plan_command)
app.command("apply")(plan.apply_command)
app.command("validate")(validate.validate_command)
app.command("metrics")(history.metrics_command)
app.command("journal")(history.journal_command)
app.command("reconcile")(reconcile.reconcile_command)
app.command("repair")(repair.repair_command)
app.command("completions")(completions.completions_command)
app.add_typer(state.app, name="state")
app.add_typer(schema.app, name="schema")
app.add_typer(changes.app, name="cdc")


def _version(value: bool) -> None:
    if value:
        from rivet import _native

        typer.echo(f"rivet {__version__} (native module {_native.__version__}, {_native.build_profile} build)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    json_errors: Annotated[
        bool,
        typer.Option(
            "--json-errors", help="Also print each error as one line of JSON on stderr (code, export, message, hint)."
        ),
    ] = False,
) -> None:
    """Export tables and queries from PostgreSQL, MySQL/MariaDB and SQLite to Parquet, CSV, Delta or Iceberg."""
    from rivet.cli import _output

    _output.JSON_ERRORS = json_errors


def main() -> None:
    """Entry point of the ``rivet`` script."""
    prepare_process()
    app(args=global_options_first(sys.argv[1:]))


def global_options_first(args: list[str]) -> list[str]:
    """``--json-errors`` wherever it is written (``rivet run -c f --json-errors``), as the option before the command."""
    if "--json-errors" not in args[1:] or "--" in args:
        return args
    return ["--json-errors", *(a for a in args if a != "--json-errors")]


def prepare_process() -> None:
    """Process-wide settings of a rivet command, made before pyarrow loads.

    Arrow's jemalloc pool returns freed memory to the system, so peak memory stays
    flat across a long export; the default (mimalloc) keeps it. An explicit
    ARROW_DEFAULT_MEMORY_POOL wins.
    """
    import os

    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
