"""Draw a digit and watch the SE block respond: an explorer of a trained SE-LeNet run, in the browser.

    pip install -r requirements-app.txt
    python explore.py                      # the run in outputs/, served at http://127.0.0.1:7860/
    python explore.py --run-dir RUN --port 7861 --data-dir path/to/mnist

Draw a digit (or pick a test image by index or digit) and see the prediction, conv2's 16 feature maps before
and after the SE block scales them, and the 16 excitations beside the mean excitation of the predicted digit.
Swap the learned excitation for another (the training-set mean, all ones, 0.5, a digit's mean) and see the
prediction it gives. It listens on 127.0.0.1 only and sends nothing anywhere (no analytics, no share link).
In Jupyter or Colab, `import explore; explore.build_app(explore.Explorer.load("outputs")).launch(share=False)`
shows it inline (share=False: on Colab, Gradio would otherwise make a public share link).
"""

import os
import socket
import sys
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before Gradio loads: it reports nothing

import senet_lenet  # isort: skip  (first: it quiets TensorFlow and caps oneDNN before they load)
import keras
import numpy as np
from PIL import Image

import visualize
from senet_lenet import UsageError, predict

CHOICES = ["learned", "training-set mean", "all ones", "all 0.5", *(f"mean of digit {d}" for d in range(10))]


def mnist_like(drawing):
    """A drawing (H, W, 4 or 3 or 1; dark ink on white, or on transparent) as MNIST prepares its digits: white on
    black, the ink's box scaled to fit 20 x 20, its centre of mass at the centre of 28 x 28; uint8. None: no ink."""
    drawing = np.asarray(drawing, np.float32)
    drawing = drawing[..., None] if drawing.ndim == 2 else drawing
    alpha = drawing[..., 3] / 255 if drawing.shape[-1] == 4 else 1.0
    ink = (255 - drawing[..., :3].mean(axis=-1)) * alpha  # transparent counts as paper
    rows, columns = np.flatnonzero(ink.max(axis=1) > 25), np.flatnonzero(ink.max(axis=0) > 25)
    if not len(rows):
        return None
    box = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    scale = 20 / max(box.shape)
    size = (max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale)))
    small = np.asarray(Image.fromarray(box.astype(np.uint8)).resize(size, Image.LANCZOS), np.float32)
    weights = small / small.sum()
    centre = [(weights.sum(axis=1 - axis) * np.arange(small.shape[axis])).sum() for axis in (0, 1)]
    top, left = (int(np.clip(round(14 - c), 0, 28 - n)) for c, n in zip(centre, small.shape, strict=True))
    image = np.zeros((28, 28), np.float32)
    image[top : top + small.shape[0], left : left + small.shape[1]] = small
    return image.clip(0, 255).astype(np.uint8)


class Explorer:
    """A trained model, with what the explorer shows beside an image: the excitation's training-set mean and each
    digit's mean over the test set."""

    def __init__(self, model, train_images, test_data):
        self.model, self.test_data = model, test_data
        inside = [model.get_layer(name).output for name in ("conv2", "se_expand", "predictions")]
        self.inside, self.given = keras.Model(model.input, inside), senet_lenet.with_excitation(model)
        self.train_mean = predict(model, train_images)[1][0].mean(axis=0)
        test_excitation = predict(model, test_data[0])[1][0]
        self.class_means = np.array([test_excitation[test_data[1] == d].mean(axis=0) for d in range(10)])

    @classmethod
    def load(cls, run_dir, data_dir=None):
        run, model = senet_lenet.load_run(run_dir)
        train, test = senet_lenet.load_mnist(data_dir)
        return cls(model, senet_lenet.first(train, run["settings"]["train_samples"])[0], test)

    def replacement(self, choice, excitation):
        """The excitation of CHOICES' `choice` for an image whose learned excitation is `excitation`."""
        if choice.startswith("mean of digit"):
            return self.class_means[int(choice.rsplit(" ", 1)[1])]
        fixed = {"learned": excitation, "training-set mean": self.train_mean, "all ones": 1.0, "all 0.5": 0.5}
        return np.broadcast_to(fixed[choice], excitation.shape).astype(np.float32)

    def respond(self, image, choice="learned"):
        """For one 28 x 28 image: (probabilities, conv2's maps (8, 8, 16), the excitation (16,), the probabilities
        with the excitation of `choice` instead)."""
        maps, excitation, probabilities = (np.asarray(x)[0] for x in self.inside(image[None]))
        given = self.replacement(choice, excitation)
        return probabilities, maps, excitation, np.asarray(self.given([image[None], given[None]]))[0]


def top3(probabilities):
    return {str(d): float(probabilities[d]) for d in np.argsort(-probabilities)[:3]}


def build_app(explorer):
    import gradio as gr

    def show(image, choice):
        if image is None:
            return None, None, None, None, None
        probabilities, maps, excitation, replaced = explorer.respond(image, choice)
        digit = int(probabilities.argmax())
        parts = maps[None], excitation[None], (maps * excitation)[None]  # as visualize.anatomy's, of one image
        mean = [(f"mean of digit {digit}", explorer.class_means[digit])]
        figure = visualize.anatomy_figure([image], [f"predicted {digit}"], *parts, mean)
        return image, np.kron(image, np.ones((8, 8), np.uint8)), top3(probabilities), top3(replaced), figure

    def drawn(value, choice):
        return show(mnist_like(value["composite"]) if value and value.get("composite") is not None else None, choice)

    def test_image(index, choice):
        index = int(np.clip(index or 0, 0, len(explorer.test_data[1]) - 1))
        return show(explorer.test_data[0][index], choice)

    def first_of(digit, choice):
        return test_image(int(np.argmax(explorer.test_data[1] == int(digit))), choice)

    with gr.Blocks(title="SE-LeNet explorer") as app:
        gr.Markdown("## Draw a digit and watch the SE block respond")
        with gr.Row():
            with gr.Column(scale=1):
                brush = gr.Brush(default_size=20, colors=["#000000"], color_mode="fixed")
                canvas = gr.Sketchpad(label="draw a digit", canvas_size=(280, 280), brush=brush, layers=False)
                with gr.Row():
                    index = gr.Number(label="or test image number", precision=0, minimum=0)
                    digit = gr.Dropdown([str(d) for d in range(10)], label="or the first test image of digit")
                choice = gr.Dropdown(CHOICES, value="learned", label="excitation used instead of the learned one")
            with gr.Column(scale=1):
                seen = gr.Image(label="what the model sees: 28 × 28, white on black", height=240, interactive=False)
                with gr.Row():
                    prediction = gr.Label(num_top_classes=3, label="prediction", elem_id="prediction")
                    replaced = gr.Label(num_top_classes=3, label="prediction with the chosen excitation")
        plot = gr.Plot(label="conv2's maps and the excitation")
        image = gr.State()  # the 28 x 28 input shown
        outputs = [image, seen, prediction, replaced, plot]
        canvas.change(drawn, [canvas, choice], outputs, api_name="drawn")
        index.submit(test_image, [index, choice], outputs, api_name="test_image")
        digit.change(first_of, [digit, choice], outputs, api_name="first_of")
        choice.change(show, [image, choice], outputs, api_name=False)
    return app


def main(argv=None):
    p = senet_lenet.ArgumentParser("explore.py", __doc__.split("\n")[0])
    p.add_argument("--run-dir", default=senet_lenet.OUT_DIR, help="the run to explore (senet_lenet.py --out-dir)")
    p.add_argument("--data-dir", help="folder with the four MNIST IDX files (default: $MNIST_DIR, else download)")
    p.add_argument("--port", type=senet_lenet.number(1, 65535), default=7860, help="on 127.0.0.1 (default 7860)")
    args, app = p.parse_args(argv), None
    try:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise UsageError("the explorer needs Gradio: pip install -r requirements-app.txt") from None
        with socket.socket() as probe:  # Gradio would try other ports; the user asked for this one
            if probe.connect_ex(("127.0.0.1", args.port)) == 0:
                raise UsageError(f"port {args.port} on 127.0.0.1 is in use; choose another with --port")
        app = build_app(Explorer.load(args.run_dir, args.data_dir))
        app.launch(server_name="127.0.0.1", server_port=args.port, share=False, quiet=True, prevent_thread_lock=True)
        print(f"Explorer of {args.run_dir} at http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
        while True:
            time.sleep(0.5)
    except UsageError as e:
        print(f"explore.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if app is not None:
            app.close()
        print("\nexplore.py: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
