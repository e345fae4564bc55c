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
    line = "Epoch 10, Loss: 0.0215, Accuracy: 99.29, Test Loss: 0.0374, Test Accuracy: 98.91"
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert line in text and line in f.read()
    assert "Total params: 44,554" in text and len(images) == 5
    assert "Max |excitation difference| over 10000 test images: 0\n" in text


def helpers_cell():
    """The notebook's helpers (its set-up cell that defines train and script), run outside a kernel."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and "def train(" in c.source]
    namespace = {}
    exec("import os, sys\n" + cell.source, namespace)
    return namespace


@pytest.mark.runs  # starts a process
def test_a_failing_script_stops_the_notebook(capsys):
    script = helpers_cell()["script"]
    with pytest.raises(RuntimeError, match="exit code 3"):
        script("-c", "print('its last line'); raise SystemExit(3)")
    assert "its last line" in capsys.readouterr().out


def test_a_run_stopped_after_an_epoch_is_resumed_and_a_finished_one_kept(tmp_path):
    namespace = helpers_cell()
    calls = []
    namespace["script"] = lambda *args: calls.append(args)
    run = tmp_path / "run"
    namespace["train"](str(run))  # nothing there: a new run
    run.mkdir()
    (run / "run.json").write_text('{"finished": false}')  # written after epoch 1 of 10
    namespace["train"](str(run))
    (run / "run.json").write_text('{"finished": true}')
    namespace["train"](str(run))
    assert [call[-1] for call in calls] == [str(run), "--resume"]
