"""The data an evaluator trains and scores on, prepared once: pipelines, calibration samples, fingerprints.

The pipelines are built once. The shuffle is applied per candidate on top of the cached base dataset
(:meth:`EvalData.train_data`), so every candidate sees the same order whatever was evaluated before it:
a resumed search scores exactly like an uninterrupted one. Validation is scored eagerly
(:meth:`EvalData.accuracy`), with Keras' notion of accuracy (``tfmpq.accuracy.hits``).
"""
from __future__ import annotations

import hashlib
import json
import random

import numpy as np

from tfmpq._keras import keras, tf
from tfmpq.accuracy import hits
from tfmpq.checks import check_data, num_samples, take_samples
from tfmpq.training import distill_targets, teacher_probabilities


class EvalData:
    """Training and validation data of one evaluator.

    Args:
        model: the float tf_keras model (the data is checked against it).
        train: ``(x, y)`` arrays or a batched ``tf.data.Dataset``.
        val: validation data, same forms as ``train``.
        batch_size: the batch size of arrays.
        seed: the seed of the per-candidate shuffle.
        calibration_batches: training batches kept as the calibration samples.

    Raises:
        ValueError: ``train`` or ``val`` that cannot be trained or scored on (``tfmpq.checks.check_data``).
    """

    def __init__(self, model, train, val, *, batch_size: int, seed: int, calibration_batches: int):
        # Bad data fails here, before a model is built or a step is trained (issue 13).
        train = check_data(model, train, name="train")
        val = check_data(model, val, name="val")
        self.batch_size = batch_size
        self.seed = seed
        self.calibration_batches = calibration_batches
        #: ``(train, val)`` as arrays (what workers receive), or None when either is a dataset.
        self.arrays = (tuple(train), tuple(val)) if isinstance(train, (tuple, list)) and isinstance(val, (tuple, list)) \
            else None

        self._train_arrays = isinstance(train, (tuple, list))
        self._distill_base = None  # see distill_data
        if self._train_arrays:
            x, y = train
            self._train_xy = (x, y)
            self._num_train = num_samples(x)  # x: one array, or a tuple of them for several inputs
            self._train_base = tf.data.Dataset.from_tensor_slices((x, y)).cache()
            n_cal = min(self._num_train, self.calibration_batches * self.batch_size)
            self.calib_x = take_samples(x, n_cal)
            self.y_example = np.asarray(y[:1])
        else:
            self._num_train = None
            self._train_base = train
            xs, ys = [], []
            for xb, yb in train.take(self.calibration_batches):
                xs.append(np.asarray(xb))
                ys.append(np.asarray(yb))
            self.calib_x = np.concatenate(xs)
            self.y_example = ys[0][:1]
        if isinstance(val, (tuple, list)):
            # Large batches: validation only runs inference (eager for ptq, graph in fit for qat).
            self.val = tf.data.Dataset.from_tensor_slices(tuple(val)).batch(max(self.batch_size, 512)).cache()
            # one input array (a multi-input model's list or dict of arrays keeps the pipeline)
            self._val_arrays = tuple(val) if all(hasattr(a, "shape") for a in val) else None
        else:
            self.val = val
            self._val_arrays = None
        self._val_tensors = None  # see val_batches
        self.data_sha1 = _sha1(list(train) + list(val)) if self._train_arrays and isinstance(val, (tuple, list)) \
            else None
        self.data_shapes = {k: _shapes(d) for k, d in (("train", train), ("val", val))}

    def train_data(self):
        """The training pipeline, shuffled with the seed's order (the same for every candidate)."""
        if not self._train_arrays:
            return self._train_base
        return self._train_base.shuffle(
            self._num_train, seed=self.seed, reshuffle_each_iteration=True
        ).batch(self.batch_size)

    @property
    def num_train(self) -> int | None:
        """Training samples (None for a dataset)."""
        return self._num_train

    def distill_data(self, teacher, from_logits: bool):
        """The training pairs with ``teacher``'s probabilities packed beside the labels
        (``tfmpq.training.distill_targets``, computed once), shuffled in :meth:`train_data`'s order.

        Raises:
            ValueError: the training data is a ``tf.data.Dataset`` (the teacher's outputs are computed once).
        """
        if not self._train_arrays:
            raise ValueError("Invalid value for `recipe`: distillation needs `train` as (x, y) arrays (the teacher's "
                             "outputs are computed once). Received: a tf.data.Dataset.")
        if self._distill_base is None:
            x, y = self._train_xy
            targets = distill_targets(y, teacher_probabilities(teacher, x, from_logits))
            self._distill_base = tf.data.Dataset.from_tensor_slices((x, targets)).cache()
        return self._distill_base.shuffle(self._num_train, seed=self.seed, reshuffle_each_iteration=True).batch(
            self.batch_size)

    def val_batches(self):
        """The validation batches for eager scoring. From arrays: tensors made once (iterating the tf.data
        pipeline cost ~0.1 s per candidate on the demo CNN, a fifth of a one-shot candidate's time); a
        dataset the user passed is iterated as given (it may not fit in memory)."""
        if self._val_tensors is None:
            if self._val_arrays is None:
                return self.val
            x, y = self._val_arrays
            b = max(self.batch_size, 512)
            self._val_tensors = [(tf.constant(x[i:i + b]), np.asarray(y[i:i + b])) for i in range(0, len(x), b)]
        return self._val_tensors

    def accuracy(self, model, from_logits: bool) -> float:
        """Validation accuracy by eager inference (no compile: ~2 s saved per ptq candidate).

        Matches Keras' "accuracy": argmax for multi-class outputs (sparse or one-hot labels), a 0.5
        threshold (0 for logits) for a single output unit. NaN when an output is not finite.
        """
        correct = total = 0
        for xb, yb in self.val_batches():
            h = hits(np.asarray(model(xb, training=False)), np.asarray(yb), from_logits)
            if h is None:
                return float("nan")
            correct += int(np.sum(h))
            total += len(h)
        return correct / total if total else float("nan")


def seed_everything(seed: int, tensorflow: bool = True) -> None:
    """Seeds Python and NumPy, and TensorFlow when `tensorflow`.

    TensorFlow's `set_seed` clears the eager kernel cache, so the next call of the traced train
    function is re-instantiated and re-optimised (about 9 s of a MobileNet-0.25 candidate). The
    reused model does not need it: the dataset shuffle has its own op seed, and its Dropout/noise
    layers draw from generators whose state `VariableBitModel.reset` restores.
    """
    if tensorflow:
        keras.utils.set_random_seed(seed)
    else:
        random.seed(seed)
        np.random.seed(seed)


def model_fingerprints(model) -> dict:
    """SHA-1 of the model's weights and of its architecture: a resume with another model is refused."""
    return {"weights_sha1": _sha1(model.get_weights()),
            "model_config_sha1": hashlib.sha1(
                json.dumps(model.get_config(), sort_keys=True, default=str).encode()).hexdigest()}


def default_loss(model, y_example: np.ndarray):
    """The model's compiled loss, else a (sparse) categorical or binary cross-entropy inferred from the
    labels and the output, with ``from_logits`` off when the model ends in a softmax/sigmoid."""
    compiled = getattr(model, "loss", None)
    if compiled:
        return compiled
    from_logits = not ends_in_probabilities(model)
    y = y_example
    if int(model.output_shape[-1] or 0) == 1:
        return keras.losses.BinaryCrossentropy(from_logits=from_logits)
    if y.ndim >= 2 and y.shape[-1] > 1:
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def ends_in_probabilities(model) -> bool:
    """Whether a model's output is probabilities (a final softmax or sigmoid: a Dense/Conv with that
    activation, an ``Activation`` layer or a ``Softmax`` layer), so its loss takes ``from_logits=False``."""
    last = model.layers[-1]
    if type(last).__name__ == "Softmax":
        return True
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", activation)
    return name in ("softmax", "sigmoid")


def _shapes(data) -> list | str:
    """``[x shape, y shape]`` of an ``(x, y)`` pair; a dataset's element spec as text."""
    if isinstance(data, (tuple, list)):  # x may be a tuple of arrays (several inputs)
        return [tf.nest.map_structure(lambda a: list(np.shape(a)), a) for a in data]
    return str(getattr(data, "element_spec", type(data).__name__))


def _sha1(arrays) -> str:
    h = hashlib.sha1()
    for a in tf.nest.flatten(arrays):  # x may be a tuple of arrays (several inputs)
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()
