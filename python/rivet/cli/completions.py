"""``rivet completions SHELL``: the shell completion script, to source or install."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

Shell = Literal["bash", "zsh", "fish", "powershell", "pwsh"]


def completions_command(
    shell: Annotated[Shell, typer.Argument(help="bash, zsh, fish, powershell or pwsh.")],
) -> None:
    """Print the completion script of SHELL, e.g. `source <(rivet completions bash)` in ~/.bashrc."""
    from typer.completion import get_completion_script

    typer.echo(get_completion_script(prog_name="rivet", complete_var="_RIVET_COMPLETE", shell=shell))
