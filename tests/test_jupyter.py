"""rivet in a real Jupyter kernel: progress drawn as a widget, never as raw escape codes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import nbclient
import nbformat

WIDGET = "application/vnd.jupyter.widget-view+json"


def run_cell(source: str, cwd: Path) -> list[dict]:
    """Execute one cell in a fresh python3 kernel; its outputs."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return notebook.cells[0].outputs


def test_an_export_in_a_notebook_draws_its_progress_in_a_widget_and_shows_its_result(tmp_path):
    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, f"n{i}") for i in range(1, 5001)])
    outputs = run_cell(
        "import rivet\n"
        f"result = rivet.export('sqlite:///{database}', table='orders', destination='out')\n"
        "print(result.rows)\n"
        "result",
        tmp_path,
    )
    assert "\\u001b[" not in json.dumps(outputs), "escape codes reached the notebook"
    assert any(WIDGET in o.get("data", {}) for o in outputs), f"no progress widget in {outputs}"
    assert [o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout"] == ["5000\n"]
    shown = next(o for o in outputs if o["output_type"] == "execute_result")["data"]
    assert "<th style='text-align:left'>status</th><td>success</td>" in shown["text/html"]
    assert not [
        o for o in outputs if o["output_type"] == "stream" and o["name"] == "stderr" and "ipywidgets" in o["text"]
    ]
