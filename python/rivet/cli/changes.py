"""``rivet cdc``: what change-capture exports hold on their servers."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from rivet.cli._output import say
from rivet.cli.state import ConfigOption, ExportOption, key_of, state_of

app = typer.Typer(help="Change capture (mode: cdc): the slots and positions of its exports.", no_args_is_help=True)


@app.command("drop")
def drop(
    config: ConfigOption,
    export: ExportOption,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
) -> None:
    """Drop an export's replication slot and forget its position and columns: its next run anchors (and snapshots) anew.

    The server then keeps no log for the export; changes made until its next run are not
    captured (with cdc.initial: snapshot that run takes a new snapshot).
    """
    from rivet.plan.export import build_plan, table_keys

    with state_of(config) as (loaded, store):
        plan = dataclasses.replace(
            build_plan(loaded, loaded.export(export)), state_key=key_of(loaded, store, export, reading=False)
        )
        feed = plan.change_feed()
        if not yes:
            typer.confirm(f"drop {feed.anchor_name} and forget the position of {export}?", abort=True)
        try:
            dropped = feed.release()
        finally:
            feed.close()
        forgot = store.reset_change_position(plan.key)
        for table in table_keys(plan.key, loaded.export(export)):
            store.reset_change_position(table)
    what = [f"dropped {feed.anchor_name}" if dropped else f"no {feed.anchor_name} on the server"]
    what.append("forgot its position" if forgot else "it had no position")
    say(f"{export}: {'; '.join(what)}; its next run anchors anew")
