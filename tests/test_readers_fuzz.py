"""The readers against any bytes: arrays of the promised shape, or the project's own error naming the file.

Files are derived from small valid ones by truncation, bit flips, new headers and
random bytes. Over 1,000 examples run in all.
"""

import gzip
import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selenet import mnist

EXAMPLES = 400  # per test, three tests: 1,200 examples


def valid_idx(kind):
    rng = np.random.default_rng(0)
    if kind == "images":
        return struct.pack(">4I", 0x803, 3, 28, 28) + rng.integers(0, 256, 3 * 784, dtype=np.uint8).tobytes()
    return struct.pack(">2I", 0x801, 5) + bytes([3, 1, 4, 1, 5])


def valid_npz():
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(
        buffer,
        x_train=rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        y_train=np.array([0, 1, 2, 9], np.uint8),
        x_test=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        y_test=np.array([7, 3], np.uint8),
    )
    return buffer.getvalue()


def damaged(data):
    """A strategy of byte strings derived from `data`."""
    truncated = st.integers(0, len(data)).map(lambda n: data[:n])
    flipped = st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 7)), min_size=1, max_size=8).map(
        lambda flips: flip_bits(data, flips)
    )
    reheadered = st.binary(min_size=0, max_size=24).map(lambda header: header + data[16:])
    appended = st.binary(min_size=1, max_size=64).map(lambda tail: data + tail)
    return st.one_of(truncated, flipped, reheadered, appended, st.binary(max_size=600))


def flip_bits(data, flips):
    out = bytearray(data)
    for position, bit in flips:
        out[position] ^= 1 << bit
    return bytes(out)


def check_idx(path, kind, data):
    reader = mnist.read_idx_images if kind == "images" else mnist.read_idx_labels
    try:
        array = reader(path)
    except mnist.MNISTDataError as e:
        assert str(path) in str(e)
        return
    assert array.dtype == np.uint8
    assert array.shape[1:] == ((28, 28) if kind == "images" else ())
    if kind == "labels":
        assert array.max(initial=0) <= 9


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("kind", ["images", "labels"])
@FUZZ
@given(data=st.data())
def test_idx_reader_against_damaged_files(tmp_path, kind, data):
    raw = data.draw(damaged(valid_idx(kind)))
    compress = data.draw(st.booleans())
    path = tmp_path / (f"{kind}.gz" if compress else kind)
    if compress:
        # damage the gzip stream itself half of the time
        stream = gzip.compress(raw, mtime=0)
        raw = data.draw(st.one_of(st.just(stream), damaged(stream)))
    path.write_bytes(raw)
    check_idx(path, kind, raw)


@FUZZ
@given(raw=damaged(valid_npz()))
def test_npz_reader_against_damaged_files(tmp_path, raw):
    path = tmp_path / "mnist.npz"
    path.write_bytes(raw)
    try:
        (x_train, y_train), (x_test, y_test) = mnist.read_npz(path, train_records=None, test_records=None)
    except mnist.MNISTDataError as e:
        assert str(path) in str(e)
        return
    for x, y in ((x_train, y_train), (x_test, y_test)):
        assert x.dtype == np.uint8 and x.shape[1:] == (28, 28) and y.shape == (len(x),)
        assert y.dtype == np.uint8 and y.max(initial=0) <= 9


def test_the_valid_files_are_read():
    """The seeds of the fuzzing are themselves valid, so the damage is what the tests vary."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/f"
        open(path, "wb").write(valid_idx("images"))
        assert mnist.read_idx_images(path).shape == (3, 28, 28)
        open(path, "wb").write(valid_idx("labels"))
        assert mnist.read_idx_labels(path).tolist() == [3, 1, 4, 1, 5]
        open(path + ".npz", "wb").write(valid_npz())
        assert mnist.read_npz(path + ".npz", None, None)[1][1].tolist() == [7, 3]
