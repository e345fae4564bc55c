"""docs/se_lenet.ipynb: committed without outputs; run top to bottom in a real Jupyter kernel on the real MNIST."""

import os

import nbformat
import pytest

from helpers import ROOT

NOTEBOOK = os.path.join(ROOT, "docs", "se_lenet.ipynb")


def test_the_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.e2e
def test_the_notebook_runs_top_to_bottom(mnist_dir, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("MNIST_DIR", mnist_dir)
    monkeypatch.setenv("SELENET_NOTEBOOK_OUT", str(tmp_path / "notebook"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    text = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ).replace("\r\n", "\n")  # ! commands print through a terminal
    images = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    ]
    # The assignment's run, with the README's numbers; the summary; batch 0, the class means, the curves, the
    # diagram and the comparison drawn inline; the same seed twice: the same excitations.
    assert "Epoch 10, Loss: 0.0224, Accuracy: 99.24, Test Loss: 0.0359, Test Accuracy: 98.96" in text
    assert "Total params: 44,554" in text and len(images) == 5
    assert "Max |excitation difference| over 10000 test images: 0\n" in text
