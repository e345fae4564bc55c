"""Running a trained model over data: in batches of EVAL_BATCH_SIZE, one trace however often it is called."""

import numpy as np
import tensorflow as tf

EVAL_BATCH_SIZE = 1000  # images per call: a speed knob that does not change results


def outputs(model, inputs, training=False):
    """(predictions, [excitation of each SE block]) of any of the project's models (plain LeNet-5 has none)."""
    result = model(inputs, training=training)
    if isinstance(result, (list, tuple)):
        return result[0], list(result[1:])
    return result, []


def in_batches(step, inputs, batch_size=EVAL_BATCH_SIZE):
    """step(*batch) -> (predictions, [excitations]) over `inputs` (a list of arrays of one length), in order;
    returns (predictions, [excitations of each SE block]) as NumPy."""
    predictions, excitations = [], []
    for start in range(0, len(inputs[0]), batch_size):
        p, e = step(*(x[start : start + batch_size] for x in inputs))
        predictions.append(p.numpy())
        excitations.append([block.numpy() for block in e])
    return np.concatenate(predictions), [np.concatenate(block) for block in zip(*excitations, strict=True)]


def predictor(model):
    """predict(inputs) -> (predictions (N, 10), [excitations (N, C) of each SE block]) as NumPy. inputs: the
    images (uint8, as MNIST stores them), or a list for a model that takes given excitations.

    The bits of model.predict (the same graph, in the same batches) without its tf.data pipeline, most of
    the time of a call on a few hundred images (docs/speed.md; tests/test_model.py compares the two)."""
    step = tf.function(lambda *batch: outputs(model, list(batch) if len(batch) > 1 else batch[0]))
    return lambda inputs: in_batches(step, inputs if isinstance(inputs, list) else [inputs])


def accuracy_percent(predictions, labels):
    """Top-1 accuracy in percent, to 4 decimals (4 decimals hold one test image: 0.01)."""
    return round(100 * float(np.mean(np.argmax(predictions, axis=1) == labels)), 4)
