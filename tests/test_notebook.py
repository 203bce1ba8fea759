"""notebooks/quickstart.ipynb runs top to bottom in a fresh kernel, and is saved to read
well on GitHub: with its outputs, small, without widget state."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
# Seconds per cell: the slowest does an upload of 2,000 rows and draws a chart.
CELL_TIMEOUT_S = 120
# GitHub renders notebooks up to a few MB; a quickstart with one chart needs far less.
MAX_SAVED_BYTES = 200_000
KERNEL = "uploader-tests"


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec for this very interpreter: a `python3` spec found elsewhere on the
    machine could belong to a Python without uploader."""
    spec = tmp_path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    # Without it jupyter_core warns (DeprecationWarning) that its default paths will change.
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    return KERNEL


def outputs_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts.extend(str(data.get(kind, "")) for kind in ("text/plain", "text/html"))
    return "\n".join(parts)


def test_the_quickstart_runs_top_to_bottom_in_a_fresh_kernel(kernel):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )

    client.execute()  # raises CellExecutionError on the first cell that fails

    shown = [outputs_text(cell) for cell in notebook.cells if cell.cell_type == "code"]
    assert any("<ValidationResult: 2,000 rows read" in text for text in shown)
    assert any("Upload completed" in text for text in shown)
    assert any("image/png" in str(cell.get("outputs")) for cell in notebook.cells)
    assert "0 events sent, 0 rejected, 1 input uploaded before" in shown[-2]
    assert "Traceback" not in "\n".join(shown)


def test_the_quickstart_is_saved_with_small_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]

    assert NOTEBOOK.stat().st_size < MAX_SAVED_BYTES
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    assert all(cell.outputs for cell in code[:-1])  # the last cell stops the sandbox
    assert "widgets" not in notebook.metadata
    streams = [o for cell in code for o in cell.outputs if o.output_type == "stream"]
    assert not [o for o in streams if o.name == "stderr"]
