"""The layout: three scripts on top, the shared package `selenet` below them, the study's package `study`.
Read from the source (no imports run): what imports what."""

import ast
import os

from helpers import ROOT

SCRIPTS = {"senet_lenet", "visualize", "ablation"}


def project_modules():
    """{module name: path} of the scripts and both packages."""
    modules = {name: os.path.join(ROOT, f"{name}.py") for name in SCRIPTS}
    for package in ("selenet", "study"):
        for file in os.listdir(os.path.join(ROOT, package)):
            if file.endswith(".py") and file != "__init__.py":
                modules[f"{package}.{file[:-3]}"] = os.path.join(ROOT, package, file)
    return modules


def imports(path, modules):
    """The project modules the file imports, anywhere in it (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found & set(modules)


def test_the_root_holds_the_three_scripts():
    top = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}
    assert top == SCRIPTS


def test_no_import_circle_and_the_shared_package_imports_no_script():
    modules = project_modules()
    graph = {name: imports(path, modules) for name, path in modules.items()}
    for name, targets in graph.items():
        if name.startswith("selenet."):
            assert not targets & SCRIPTS and not any(t.startswith("study.") for t in targets), (name, targets)
    state = {}

    def visit(name, path):
        state[name] = "open"
        for target in graph[name]:
            assert state.get(target) != "open", f"import circle: {' -> '.join([*path, target])}"
            if target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_training_loads_no_drawing_of_heatmaps_and_the_study_no_visualize():
    modules = project_modules()
    assert "selenet.heatmaps" not in imports(modules["selenet.tensorboard_logs"], modules)
    assert "selenet.mnist" not in imports(modules["selenet.heatmaps"], modules)
    assert "selenet.figures" not in imports(modules["selenet.runs"], modules)
    assert "study.workers" not in imports(modules["selenet.cli"], modules)


def test_the_training_script_reads_as_the_assignment():
    """senet_lenet.py holds the assignment alone, in at most 250 lines: the study's SE blocks are variants.py's."""
    source = open(os.path.join(ROOT, "senet_lenet.py"), encoding="utf-8").read()
    assert len(source.splitlines()) <= 250
    for variant in ("GlobalMaxPooling2D", "Conv1D", "tanh", "gate_scale", ".se_bias", "eca_kernel", "conv1_reduction"):
        assert variant not in source, variant
    assert len(open(os.path.join(ROOT, "visualize.py"), encoding="utf-8").read().splitlines()) <= 300
    assert len(open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()) <= 200
