"""Unit tests: no training, no child process."""

import collections
import csv
import gzip
import json
import os

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ablation
import senet_lenet
import visualize
from helpers import ROOT, idx_bytes, synthetic_digits
from study import stats, variants

DEFAULTS = senet_lenet.settings_of(senet_lenet.parser().parse_args([]))


def write_mnist(directory, **replace):
    """Small stand-ins named as MNIST's files, but with MNIST's record counts in their headers unless replaced."""
    for images, labels, records in senet_lenet.MNIST_FILES.values():
        for name, shape in ((images, (records, 28, 28)), (labels, (records,))):
            data = replace.get(name, idx_bytes(np.zeros(shape, np.uint8)))
            with gzip.open(os.path.join(directory, name + ".gz"), "wb") as f:
                f.write(data)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"\x00\x00\x08\x02" + b"\x00" * 20, "not an MNIST IDX file"),
        (idx_bytes(np.zeros((10000, 28, 28), np.uint8))[:-5], "damaged or another file"),
        (idx_bytes(np.zeros((10000, 28, 27), np.uint8)), "expected MNIST's (10000, 28, 28)"),
        (b"", "first bytes are missing"),
    ],
    ids=["magic", "truncated", "shape", "empty"],
)
def test_a_damaged_mnist_file_is_named_in_one_line(tmp_path, data, fragment):
    write_mnist(tmp_path, **{"t10k-images-idx3-ubyte": data})
    with pytest.raises(senet_lenet.UsageError, match="t10k-images") as error:
        senet_lenet.load_mnist(str(tmp_path))
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_labels_must_be_digits_and_every_file_must_be_there(tmp_path):
    write_mnist(tmp_path, **{"t10k-labels-idx1-ubyte": idx_bytes(np.full(10000, 10, np.uint8))})
    with pytest.raises(senet_lenet.UsageError, match="label 10 is not a digit"):
        senet_lenet.load_mnist(str(tmp_path))
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(senet_lenet.UsageError, match="lacks the MNIST file t10k-labels-idx1-ubyte"):
        senet_lenet.load_mnist(str(tmp_path))
    with pytest.raises(senet_lenet.UsageError, match="does not exist"):
        senet_lenet.load_mnist(str(tmp_path / "nowhere"))


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 700), batch=st.integers(1, 130), steps=st.integers(1, 40), epoch=st.integers(1, 4))
def test_an_epoch_takes_its_steps_in_pass_order(size, batch, steps, epoch):
    """Each epoch's chunks take `steps` batches, continuing the passes of the epochs before it, each pass in
    pass_order(seed, pass): what a resumed run sees is what an uninterrupted one sees."""
    chunks = list(senet_lenet.epoch_chunks(7, epoch, size, batch, steps))
    seen = np.concatenate([order for _, order in chunks])
    per_pass = -(-size // batch)
    expected = []
    for step in range((epoch - 1) * steps, epoch * steps):
        p, i = divmod(step, per_pass)
        expected.append(senet_lenet.pass_order(7, p + 1, size)[i * batch : (i + 1) * batch])
    assert np.array_equal(seen, np.concatenate(expected))
    assert chunks[-1][0] == steps and all(last - 0 <= steps for last, _ in chunks)


def test_the_model_is_the_assignments():
    model = senet_lenet.build_model()
    names = [layer.name for layer in model.layers]
    for name in ("conv1", "pool1", "conv2", "se_squeeze", "se_reduce", "se_expand", "se_excite", "se_scale", "pool2"):
        assert name in names
    predictions, excitation = model(np.zeros((3, 28, 28), np.uint8))
    assert predictions.shape == (3, 10) and excitation.shape == (3, 16)
    assert model.count_params() == 44554 and model.get_layer("se_reduce").units == 4
    plain = senet_lenet.build_model(se=False)
    assert plain.name == "LeNet5" and plain.count_params() == 44554 - 128 and len(plain.outputs) == 1


def test_the_studys_assignment_block_builds_the_assignments_weights():
    keras.utils.set_random_seed(5)
    ours = senet_lenet.build_model()
    keras.utils.set_random_seed(5)
    study = variants.build(DEFAULTS, dict(variants.VARIANT))
    assert [layer.name for layer in ours.layers] == [layer.name for layer in study.layers]
    assert all(np.array_equal(a, b) for a, b in zip(ours.get_weights(), study.get_weights(), strict=True))


@pytest.mark.parametrize("change", [{"excitation": "fixed"}, {"excitation": "fixed", "se_position": "both"}])
def test_the_fixed_gains_frozen_weights_are_counted(change):
    variant = {**variants.VARIANT, **change}
    model = variants.build(DEFAULTS, variant)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert frozen == variants.frozen_weights(DEFAULTS, variant) > 0


@pytest.mark.parametrize("position", ["conv2", "both"])
def test_given_the_learned_excitations_the_model_predicts_the_same(position):
    keras.utils.set_random_seed(1)
    model = variants.build(DEFAULTS, {**variants.VARIANT, "se_position": position})
    images = np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8)
    predictions, excitations = senet_lenet.predict(model, images)
    given = senet_lenet.with_excitation(model)
    assert np.array_equal(senet_lenet.predict(given, [images, *excitations])[0], predictions)
    ones = senet_lenet.predict(given, [images, *[np.ones_like(e) for e in excitations]])[0]
    assert not np.array_equal(ones, predictions)


def test_the_excitation_role_replaces_the_excitation_and_nothing_else():
    keras.utils.set_random_seed(2)
    model = senet_lenet.build_model()
    for name in ("se_reduce", "se_expand"):  # an untrained block's excitation hardly varies; a trained one's does
        model.get_layer(name).kernel.assign(10 * model.get_layer(name).kernel)
    images = synthetic_digits(300)[0]
    predictions, (excitation,) = senet_lenet.predict(model, images)
    # By hand: conv2's maps times each channel's training-set mean (here, of 100 images), through the rest.
    x = keras.Model(model.input, model.get_layer("conv2").output)(images) * excitation[:100].mean(axis=0)
    for name in ("pool2", "flatten", "fc1", "fc2", "predictions"):
        x = model.get_layer(name)(x)
    labels = np.asarray(x).argmax(axis=1).astype(np.uint8)  # what the training-set mean predicts: 100 %
    role = visualize.excitation_role(model, 0, images[:100], (images, labels))
    assert role["train_mean"] == 100.0 > role["learned"] == visualize.percent_correct(predictions, labels)
    assert role["range_conv2"] == round(float(np.ptp(excitation, axis=0).max()), 6) > 0


def finished_run(**changes):
    run = {"format": 2, "settings": dict(DEFAULTS, epochs=1), "history": [], "finished": True, "sha256": {}}
    run["history"] = [
        {"epoch": 1, "loss": 0.1, "accuracy": 97.0, "test_loss": 0.1, "test_accuracy": 98.0, "seconds": 1}
    ]
    for key, value in changes.items():
        if key in DEFAULTS:
            run["settings"][key] = value
        else:
            run[key] = value
    return run


@pytest.mark.parametrize(
    "changes",
    [
        {"format": None},  # an older version's
        {"epochs": "1"},
        {"epochs": 1.0},
        {"lr": True},
        {"se": "yes"},
        {"optimizer": "rmsprop"},
        {"reduction": 0},
        {"momentum": 1.5},
        {"finished": 1},
        {"epochs": 2},  # finished with 1 of 2 epochs
        {"history": [{"epoch": 1, "loss": "0.1", "accuracy": 1, "test_loss": 1, "test_accuracy": 1, "seconds": 1}]},
        {"history": [{"epoch": 2}]},
        {"sha256": []},
        {"settings": {"epochs": 1}},
    ],
)
def test_a_run_json_no_run_writes_is_refused_in_one_line(tmp_path, changes):
    (tmp_path / "run.json").write_text(json.dumps(finished_run(**changes)))
    with pytest.raises(senet_lenet.UsageError, match="--overwrite") as error:
        senet_lenet.read_run(str(tmp_path))
    assert "\n" not in str(error.value)


def test_a_whole_run_json_reads_back(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(finished_run()))
    assert senet_lenet.read_run(str(tmp_path))["settings"] == dict(DEFAULTS, epochs=1)
    (tmp_path / "run.json").write_text("[1]")
    with pytest.raises(senet_lenet.UsageError):
        senet_lenet.read_run(str(tmp_path))


def test_only_the_projects_own_names_are_removed(tmp_path):
    ours = ["run.json", "selenet.keras", "checkpoints/epoch-3.index", "checkpoints/checkpoint", "se_features.npz"]
    ours += [
        "se_features/0_se_feature.png",
        "logs/train/events.out.tfevents.1.x",
        ".tmp-selenet.keras",
        "compare_3.png",
    ]
    theirs = ["notes.txt", "checkpoints/mine.txt", "se_features/notes.png", "logs/train/my.csv", "compare.png"]
    for name in ours + theirs:
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_text("x")
    senet_lenet.remove_own(str(tmp_path), senet_lenet.OWN_NAMES + senet_lenet.DRAWN)
    assert [name for name in ours if (tmp_path / name).exists()] == []
    assert [name for name in theirs if not (tmp_path / name).exists()] == []


def test_bad_flags_and_settings(capsys):
    with pytest.raises(SystemExit) as exit:
        senet_lenet.parser().parse_args(["--reduction", "32"])
    assert exit.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    with pytest.raises(senet_lenet.UsageError, match="--momentum is SGD's"):
        senet_lenet.settings_of(senet_lenet.parser().parse_args(["--momentum", "0.9"]))
    assert DEFAULTS["lr"] == 0.001 and senet_lenet.check_settings(DEFAULTS) is None


def test_the_resume_command_quotes_the_folder():
    assert (
        senet_lenet.command("senet_lenet.py", "--out-dir", "my runs/a") == "python senet_lenet.py --out-dir 'my runs/a'"
    )


def test_the_default_study_and_a_single_run_by_name():
    args = ablation.parser().parse_args([])
    configs, seeds = ablation.study_configs(args)
    assert len(configs) == 42 and list(seeds) == list(range(20))
    names = [ablation.config_name(c) for c in configs]
    assert names[:6] == [
        "se-r4_adam",
        "se-r4_sgd",
        "se-r4_sgd-momentum",
        "no-se_adam",
        "no-se_sgd",
        "no-se_sgd-momentum",
    ]
    assert {"se-r4-start0.95_sgd", "se-r4-x2_sgd-momentum", "no-se-n600_adam"} <= set(names)
    one = ablation.parser().parse_args(["--run", "se-r4-n600_sgd-momentum_seed7"])
    (config,), seeds = ablation.study_configs(one)
    settings, variant = ablation.run_settings(one, config, 7)
    assert list(seeds) == [7] and variant["train_size"] == 600 and variant["epoch_steps"] == 600
    assert settings["momentum"] == 0.9 and settings["seed"] == 7
    with pytest.raises(senet_lenet.UsageError, match="not a run of the study"):
        ablation.study_configs(ablation.parser().parse_args(["--run", "se-r3_adam_seed0"]))


def fake_rows(configs, seeds, epochs):
    """Rows of ablation.csv for every configuration and seed, with made-up accuracies."""
    rng, rows = np.random.default_rng(0), []
    for config in configs:
        for seed in seeds:
            curve = np.round(90 + rng.random(epochs) * 9, 2)
            row = {"config": ablation.config_name(config), "seed": seed, "final_test_accuracy": float(curve[-1])}
            row |= {f"role_{v}": float(np.round(90 + rng.random() * 9, 2)) for v in ("learned", "train_mean")}
            row |= {"role_shuffled": 90.0, "test_accuracy_per_epoch": " ".join(map(str, curve))}
            rows.append(row)
    return rows


def test_every_comparison_is_in_one_declared_family():
    """docs/study.md declares the families and their sizes; one Holm p per comparison."""
    configs = ablation.configurations()
    compared = ablation.comparisons(fake_rows(configs, range(5), 10), configs, 10)
    names = [c.name for c in compared]
    assert len(names) == len(set(names))
    sizes = collections.Counter(c.family for c in compared)
    lr = sizes.pop("lr")
    assert lr in (3, 4) and sizes == {
        "effect": 15, "role": 28, "scale": 14, "size": 6, "size-trend": 6, "size-role": 12,
        "epochs-adam": 9, "epochs-sgd": 9, "epochs-sgd-momentum": 9,
    }  # fmt: skip
    assert all(0 <= c.holm_p <= 1 and c.holm_p >= c.p for c in compared)
    trend = next(c for c in compared if c.name.startswith("(se-r4-n600_adam − no-se-n600_adam) − (se-r4_adam"))
    rows = fake_rows(configs, range(5), 10)
    gap = lambda a, b, s: ablation.by_seed(rows, a)[s] - ablation.by_seed(rows, b)[s]  # noqa: E731
    expected = [gap("se-r4-n600_adam", "no-se-n600_adam", s) - gap("se-r4_adam", "no-se_adam", s) for s in range(5)]
    assert trend.differences == pytest.approx(expected)


def test_the_committed_study_tables_are_what_its_csv_gives():
    """docs/images/study: one study of 840 runs under the AVX2 cap, whose ablation_comparisons.csv and ablation.md
    are what today's code computes from the committed ablation.csv, so a reader can recompute every number."""
    folder = os.path.join(ROOT, "docs", "images", "study")

    def read(name):  # universal newlines: a checkout with CRLF reads the same
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            return f.read()

    def value(text):  # the csv's text back to what ablation.csv_row wrote
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return {"True": True, "False": False}.get(text, text)

    rows = [
        {k: v if k == "test_accuracy_per_epoch" else value(v) for k, v in row.items()}
        for row in csv.DictReader(read("ablation.csv").splitlines())
    ]
    configs = ablation.configurations()
    compared = ablation.comparisons(rows, configs, 10)
    comparisons = senet_lenet.csv_text(ablation.comparison_rows(compared), ablation.COMPARISON_FIELDS)
    assert comparisons == read("ablation_comparisons.csv")
    machines, tables = read("ablation.md").split("\n", 1)
    assert machines == "Trained on: Intel(R) Xeon(R) Processor, oneDNN Intel AVX2: 840 runs."
    assert ablation.summary_markdown(rows, configs, compared, []).split("\n", 1)[1] == tables


def test_one_rounding_rule_half_away_from_zero():
    rounded = [stats.fixed(x) for x in (0.015, -0.015, 98.965, 0.125, -0.001)]
    assert rounded == ["0.02", "-0.02", "98.97", "0.13", "0.00"]
    assert ablation.mean_std([98.96, 98.97]) == "98.97 ± 0.01"  # the exact mean 98.965, not the float's 98.9649…
    assert stats.fixed(stats.Comparison("c", "f", [0.01, 0.02]).exact_mean, sign="+") == "+0.02"


def test_the_start_control_starts_its_gate_near_0_95():
    settings = dict(DEFAULTS, se=True)
    variant = dict(variants.VARIANT, gate_start=0.95)
    model = variants.build(settings, variant)
    excitation = senet_lenet.predict(model, synthetic_digits(50)[0])[1][0]
    assert 0.9 < excitation.mean() < 0.99 and excitation.max() < 1
    assert model.get_layer("se_expand").bias is not None and model.get_layer("se_reduce").bias is None


def test_holm_adjusts_within_a_family():
    compared = stats.holm([stats.Comparison(str(i), "f", d) for i, d in enumerate(([1, 1.1, 0.9], [0.1, -0.1, 0.05]))])
    raw = [c.p for c in compared]
    assert compared[0].holm_p == pytest.approx(2 * min(raw)) and compared[1].holm_p == pytest.approx(max(raw))


def test_class_means_and_summary():
    features = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (20, 1))
    labels = np.arange(20) % 10
    means = visualize.class_means(features, labels)
    assert means.shape == (10, 16) and np.allclose(means[3], features[0])
    assert visualize.class_mean_summary(means, features).endswith(
        "the block is dead: its excitation is the same for every test image"
    )


def test_visualize_refuses_a_study_run_and_an_unfinished_one(tmp_path):
    """A study's run has another block (its gate may have another scale): visualize.py draws senet_lenet.py's."""
    (tmp_path / "run.json").write_text(json.dumps(finished_run(study=dict(variants.VARIANT, gate_scale=2.0))))
    with pytest.raises(senet_lenet.UsageError, match="a run of the study's"):
        senet_lenet.load_run(str(tmp_path))
    (tmp_path / "run.json").write_text(json.dumps(finished_run(finished=False)))
    with pytest.raises(senet_lenet.UsageError, match="unfinished .* --resume"):
        senet_lenet.load_run(str(tmp_path))


def test_the_instruction_set_cap_is_taken_before_tensorflow_loads(capsys):
    assert senet_lenet.parser().parse_args(["--isa", "avx2"]).isa == "AVX2"
    other = "SSE41" if os.environ[senet_lenet.ISA_VARIABLE] != "SSE41" else "AVX"
    assert senet_lenet.main(["--isa", other, "--out-dir", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--isa {other} needs a new process" in err


def test_the_anatomy_figure_scales_conv2s_maps_by_the_excitation():
    keras.utils.set_random_seed(1)
    model = senet_lenet.build_model()
    images, labels = visualize.anatomy_images(synthetic_digits(30))
    assert list(labels) == [0, 1, 7]
    maps, excitation, scaled = visualize.anatomy(model, images)
    assert maps.shape == scaled.shape == (3, 8, 8, 16) and excitation.shape == (3, 16)
    assert np.allclose(scaled, maps * excitation[:, None, None, :], rtol=1e-6, atol=1e-7)
    assert np.allclose(excitation, senet_lenet.predict(model, images)[1][0], rtol=1e-6)
    figure = visualize.anatomy_figure(images, [f"digit {d}" for d in labels], maps, excitation, scaled)
    assert len(figure.axes) == 3 * (2 + 2 * 16) + 1  # image, bars, 32 maps per digit; the colour bar


def test_a_different_instruction_set_is_named_in_one_line(capsys):
    run = {"settings": {"threads": 1}, "versions": {"tensorflow": "2.21.0", "keras": "3.15.1", "numpy": "2.4.6"}}
    run["machine"] = {"cpu": "Intel(R) Xeon(R) Processor", "isa": {"onednn": "Intel AVX2", "cap": "AVX2"}}
    other = {**run, "machine": {**run["machine"], "isa": {"onednn": "Intel AVX-512", "cap": "DEFAULT"}}}
    visualize.environment_note("A", visualize.environment(run), "B", visualize.environment(run))
    assert capsys.readouterr().out == ""
    visualize.environment_note("A", visualize.environment(run), "B", visualize.environment(other))
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "differ in instruction set (Intel AVX2 vs Intel AVX-512)" in out
