"""What senet_lenet.py draws of a trained model: its summary, its diagram (plot_model), its training curves."""

import shutil


def model_summary_text(model):
    """model.summary() as text: model_summary.txt."""
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    return "\n".join(lines) + "\n"


def diagram_name(model_name):
    """SELeNet.png, or SELeNet.dot where Graphviz's `dot` is missing."""
    return f"{model_name}.png" if shutil.which("dot") else f"{model_name}.dot"


def save_model_diagram(model, folder, name=None, warn=print):
    """SELeNet.png via plot_model into a run folder (a Manifest); without Graphviz, SELeNet.dot and a warning
    (name: diagram_name's, found before). Returns the path."""
    import keras  # loaded already: there is a model

    options = dict(show_shapes=True, show_layer_names=True, show_layer_activations=True, dpi=96)
    name = name or diagram_name(model.name)
    path = folder.join(name)
    # With IPython importable, plot_model only prints its Graphviz message, so look for `dot` first.
    other = name[: -len(".png")] + ".dot" if name.endswith(".png") else name[: -len(".dot")] + ".png"
    if path.endswith(".png"):
        folder.write_file(name, lambda scratch: keras.utils.plot_model(model, to_file=scratch, **options))
        folder.release(other)  # drawn before where Graphviz was missing
        return path
    folder.write_text(name, keras.utils.model_to_dot(model, **options).to_string())
    folder.release(other)
    png_path = path[: -len(".dot")] + ".png"
    warn(
        f"warning: Graphviz's `dot` program was not found, so {png_path} was not drawn; "
        f"wrote the graph as {path}. Install Graphviz (Debian/Ubuntu: apt-get install "
        f"graphviz; macOS: brew install graphviz; Windows: winget install graphviz) and rerun, "
        f"or render it with: dot -Tpng {path} -o {png_path}"
    )
    return path


def plot_training_curves(history, title):
    """Loss and accuracy per epoch, train against test: training_curves.png."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline) is left alone

    epochs = [r["epoch"] for r in history]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, key, label in ((loss_axes, "loss", "loss"), (accuracy_axes, "accuracy", "accuracy (%)")):
        axes.plot(epochs, [r[key] for r in history], "o-", label="train")
        axes.plot(epochs, [r[f"test_{key}"] for r in history], "s-", label="test")
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return figure
