"""`make wheel` builds an abi3 wheel that installs into a fresh virtualenv and runs with no Rust toolchain."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_installs_and_runs_without_rust(tmp_path):
    maturin = Path(sys.executable).parent / "maturin"
    built = subprocess.run(
        [str(maturin), "build", "--release", "--locked", "--strip", "--out", str(tmp_path / "dist")],  # as make wheel
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("*.whl")
    assert "-abi3-" in wheel.name and "manylinux" in wheel.name, wheel.name

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    # Nothing of Rust where the wheel runs: no cargo, rustc or rustup on the PATH.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARGO", "RUSTUP", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    assert shutil.which("cargo", path=env["PATH"]) is None and shutil.which("rustc", path=env["PATH"]) is None
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True, timeout=300)

    version = run("rivet", "--version")
    assert version.returncode == 0 and "native module" in version.stdout and "release build" in version.stdout
    demo = run("rivet", "demo", "--json")
    assert demo.returncode == 0, demo.stderr
    assert json.loads(demo.stdout)["status"] == "success"
    read = run(
        "python",
        "-c",
        "import rivet, sys; t = rivet.read('output/demo.db', table='orders'); "
        "print(t.num_rows, rivet.__file__.startswith(sys.prefix))",
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["20000", "True"]  # the installed package, not the checkout
