"""explore.py: its functions against the model (unit), the app through gradio_client and a real browser (runs)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import explore
import senet_lenet
from helpers import ROOT, assert_one_line_error, run_script, synthetic_digits

CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver, installed by .ci/run


def test_a_drawing_is_prepared_as_mnist_prepares_its_digits():
    drawing = np.full((280, 280, 4), 0, np.uint8)  # transparent paper
    drawing[40:200, 30:60] = (0, 0, 0, 255)  # a dark bar, off centre: a "1"
    image = explore.mnist_like(drawing)
    assert image.shape == (28, 28) and image.dtype == np.uint8 and image.max() > 200
    rows, columns = np.flatnonzero(image.max(axis=1)), np.flatnonzero(image.max(axis=0))
    assert rows[-1] - rows[0] + 1 <= 20 and columns[-1] - columns[0] + 1 <= 20  # its box fits 20 x 20
    weights = image / image.sum()
    centre = [(weights.sum(axis=1 - axis) * np.arange(28)).sum() for axis in (0, 1)]
    assert np.allclose(centre, 14, atol=1)  # its centre of mass at the centre
    white = np.full((100, 100, 3), 255, np.uint8)
    assert explore.mnist_like(white) is None  # no ink
    white[20:80, 45:55] = 0
    assert explore.mnist_like(white).max() > 200  # dark on white, without alpha: the same


def test_the_explorer_gives_the_models_excitation_and_prediction():
    keras.utils.set_random_seed(2)
    model = senet_lenet.build_model()
    images, labels = synthetic_digits(200)
    explorer = explore.Explorer(model, images, (images, labels))
    predictions, (excitations,) = senet_lenet.predict(model, images[:5])
    for i in range(5):
        probabilities, maps, excitation, replaced = explorer.respond(images[i])
        assert maps.shape == (8, 8, 16)
        assert np.allclose(excitation, excitations[i], rtol=1e-5, atol=1e-7)
        assert np.allclose(probabilities, predictions[i], rtol=1e-5, atol=1e-7)
        assert np.array_equal(replaced, probabilities)  # "learned": the excitation itself
    _, _, excitation, _ = explorer.respond(images[0], "mean of digit 3")
    assert np.array_equal(explorer.replacement("mean of digit 3", excitation), explorer.class_means[3])
    assert np.all(explorer.replacement("all 0.5", excitation) == 0.5)
    ones = explorer.respond(images[0], "all ones")[3]
    given = senet_lenet.with_excitation(model)
    assert np.allclose(ones, senet_lenet.predict(given, [images[:1], np.ones((1, 16), np.float32)])[0][0], rtol=1e-6)
    assert explore.top3(predictions[0]).keys() == {str(d) for d in np.argsort(-predictions[0])[:3]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(trained_run, synthetic_mnist_dir):
    """explore.py serving the trained synthetic run: (its port, the process), once it serves."""
    port = free_port()
    command = [sys.executable, os.path.join(ROOT, "explore.py"), "--run-dir", str(trained_run), "--port", str(port)]
    env = {**os.environ, "MNIST_DIR": synthetic_mnist_dir}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # its address, printed once it serves
        assert f"at http://127.0.0.1:{port}/" in line, process.stderr.read() if process.poll() is not None else line
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.mark.runs
def test_the_app_answers_on_127_0_0_1_and_stops_on_ctrl_c(trained_run, synthetic_mnist_dir):
    from gradio_client import Client

    with served(trained_run, synthetic_mnist_dir) as (port, process):
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        _, test = senet_lenet.load_mnist(synthetic_mnist_dir)
        _, model = senet_lenet.load_run(str(trained_run))
        predictions = senet_lenet.predict(model, test[0][:3])[0]
        for index in range(3):
            _, label, replaced, _ = client.predict(index, "all ones", api_name="/test_image")  # the State not shown
            assert label["label"] == str(predictions[index].argmax())
            top = {c["label"]: c["confidence"] for c in label["confidences"]}
            assert top[label["label"]] == pytest.approx(float(predictions[index].max()), rel=1e-5)
            assert len(replaced["confidences"]) == 3
        address = socket.gethostbyname(socket.gethostname())
        if not address.startswith("127."):
            with socket.socket() as s:
                assert s.connect_ex((address, port)) != 0  # not served on the machine's other addresses
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=60) == 130
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"still running 60 s after SIGINT; its stderr: {process.communicate()[1][-3000:]}")
        assert process.stderr.read().rstrip().endswith("explore.py: stopped")


@pytest.mark.runs
def test_bad_input_is_one_line_and_exit_2(tmp_path, trained_run, synthetic_mnist_dir):
    result = run_script("explore.py", "--run-dir", tmp_path / "none")
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "does not exist")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_script(
            "explore.py", "--run-dir", trained_run, "--port", port, env={"MNIST_DIR": synthetic_mnist_dir}
        )
    assert result.returncode == 2
    assert_one_line_error(result.stderr, f"port {port} on 127.0.0.1 is in use")
    (tmp_path / "gradio.py").write_text("raise ImportError('No module named gradio')\n")  # as if not installed
    result = run_script("explore.py", "--run-dir", trained_run, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "pip install -r requirements-app.txt")


def draw_and_read(url, screenshot=None):
    """In headless Chromium: open the explorer, pick the brush, draw a stroke on the canvas; the prediction's text
    (and a screenshot of the page, if asked)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1250"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(url)
        wait = WebDriverWait(browser, 120)
        canvas = wait.until(lambda b: [c for c in b.find_elements(By.TAG_NAME, "canvas") if c.size["width"] > 100])[0]
        browser.find_element(By.CSS_SELECTOR, "button[aria-label='Brush']").click()
        stroke = ActionChains(browser).move_to_element_with_offset(canvas, 0, -60).click_and_hold()
        for _ in range(12):
            stroke.move_by_offset(0, 10)
        stroke.release().perform()
        prediction = browser.find_element(By.ID, "prediction")
        text = wait.until(lambda b: "%" in prediction.text and prediction.text)
        if screenshot:
            time.sleep(2)  # the figure, drawn after the label
            browser.save_screenshot(screenshot)
        return text
    finally:
        browser.quit()


@pytest.mark.runs
def test_a_stroke_drawn_in_a_real_browser_gets_a_prediction(trained_run, synthetic_mnist_dir):
    if not os.path.exists(CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and chromium-driver (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    with served(trained_run, synthetic_mnist_dir) as (port, _):
        lines = draw_and_read(f"http://127.0.0.1:{port}/").splitlines()
    assert lines[0] == "prediction" and lines[1] in [str(d) for d in range(10)] and lines[-1].endswith("%")
