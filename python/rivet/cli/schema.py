"""``rivet schema``: the JSON Schema of rivet.yaml and the command-line reference."""

from __future__ import annotations

import json
from typing import Any

import typer

app = typer.Typer(help="Describe rivet.yaml and the CLI for editors and docs.", no_args_is_help=True)


@app.command("config")
def config_schema() -> None:
    """Print the JSON Schema of rivet.yaml (for editors: yaml-language-server, VS Code, JetBrains)."""
    from rivet.config.descriptions import described
    from rivet.config.models import RivetConfig

    schema = described(RivetConfig.model_json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rivet.yaml"
    typer.echo(json.dumps(schema, indent=2))


@app.command("cli")
def cli_reference() -> None:
    """Print the command-line reference in Markdown."""
    from rivet.cli import app as root

    command = typer.main.get_command(root)
    typer.echo("\n".join(_markdown(command, "rivet")))


def _markdown(command: Any, path: str) -> list[str]:
    """A command's heading, help and options, then its subcommands' (typer builds click commands)."""
    lines = [f"{'#' * min(path.count(' ') + 2, 4)} `{path}`", "", (command.help or "").strip(), ""]
    shown = [p for p in command.params if not getattr(p, "hidden", False)]
    if shown:
        lines += ["| argument or option | meaning |", "|---|---|"]
        for p in shown:
            names = ", ".join(f"`{n}`" for n in p.opts) if p.param_type_name == "option" else f"`{p.name.upper()}`"
            lines.append(f"| {names} | {(getattr(p, 'help', None) or '').replace('|', '/')} |")
        lines.append("")
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            lines += _markdown(sub, f"{path} {name}")
    return lines
