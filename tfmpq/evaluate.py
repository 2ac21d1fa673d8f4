"""Scoring one quantization policy: a policy in, a :class:`Candidate` out.

The :class:`Evaluator` knows no search strategy; every strategy (and every user scoring their own
policies) goes through it. Two evaluation modes:

* ``evaluation="qat"`` (seed 003, sec. 2.2): quantize from the float weights, train ``epochs`` epochs
  of quantization-aware training, score = the best epoch's validation accuracy.
* ``evaluation="ptq"`` (seed 001, sec. II.A/III): calibrate the quantized model's activation ranges on
  a few training batches, no training, score = validation accuracy.

TensorFlow is imported inside the :class:`Evaluator` only, so that :class:`Candidate` (which the
search journal reloads) and therefore ``tfmpq.search`` never load TensorFlow.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from tfmpq.convert import as_tf_keras, tf_keras_loss

EVALUATIONS = ("qat", "ptq")


def _jsonable(obj):
    """Numpy scalars/arrays and tuples -> plain JSON types (recursively)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


@dataclass
class Candidate:
    """One scored policy.

    Attributes:
        policy: the ``QuantPolicy`` that was scored.
        accuracy: validation accuracy in [0, 1]; None when the evaluation failed.
        metrics: ``tfmpq.metrics.summary(model, policy)`` (``weight_bytes``, ``bops``,
            ``avg_weight_bits``, ``avg_op_bits``, ``compression_ratio``, ...).
        seconds: wall-clock seconds the evaluation took (0 for a cache hit's original cost is kept).
        status: ``"ok"`` or ``"failed"`` (diverged to NaN, or the evaluation raised).
        error: why it failed, else None.
        genes: the search chromosome, when it came from a search; else None.
        info: extra per-evaluation data (e.g. ``val_accuracy`` per epoch).
    """

    policy: Any
    accuracy: float | None
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0
    status: str = "ok"
    error: str | None = None
    genes: tuple | None = None
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the candidate was scored (not failed)."""
        return self.status == "ok" and self.accuracy is not None and math.isfinite(self.accuracy)

    @property
    def weight_bytes(self) -> float | None:
        return self.metrics.get("weight_bytes")

    @property
    def bops(self) -> float | None:
        return self.metrics.get("bops")

    def to_json(self) -> dict:
        """A JSON-able dict (the policy as group names and bits)."""
        p = self.policy
        policy = None
        if p is not None:
            policy = p.to_dict() if hasattr(p, "to_dict") else {
                "groups": list(p.group_names),
                "weight_bits": list(p.weight_bits),
                "activation_bits": list(p.activation_bits),
            }
        return _jsonable(
            {
                "genes": None if self.genes is None else list(self.genes),
                "policy": policy,
                "accuracy": self.accuracy,
                "metrics": {k: v for k, v in self.metrics.items()},
                "seconds": self.seconds,
                "status": self.status,
                "error": self.error,
                "info": self.info,
            }
        )

    @classmethod
    def from_json(cls, data: Mapping, policy=None) -> "Candidate":
        """Inverse of :meth:`to_json`; ``policy`` replaces the stored one (e.g. re-decoded from genes)."""
        if policy is None and data.get("policy") is not None:
            from tfmpq.policy import QuantPolicy

            policy = QuantPolicy.from_dict(data["policy"])
        return cls(
            policy=policy,
            accuracy=data.get("accuracy"),
            metrics=dict(data.get("metrics") or {}),
            seconds=float(data.get("seconds") or 0.0),
            status=data.get("status", "ok"),
            error=data.get("error"),
            genes=None if data.get("genes") is None else tuple(int(g) for g in data["genes"]),
            info=dict(data.get("info") or {}),
        )

    def __repr__(self) -> str:
        acc = "failed" if not self.ok else f"{self.accuracy:.4f}"
        bits = getattr(self.policy, "weight_bits", None)
        return f"Candidate(weight_bits={bits}, accuracy={acc}, weight_bytes={self.weight_bytes})"


class Evaluator:
    """Scores quantization policies of one float model on one dataset.

    Args:
        model: the trained float Keras model (functional or Sequential; tf_keras or Keras 3, which is
            converted with ``tfmpq.convert.as_tf_keras``).
        train: training data, ``(x, y)`` arrays or a batched ``tf.data.Dataset``.
        val: validation data, same forms as ``train``.
        evaluation: ``"qat"`` (train ``epochs`` epochs of QAT, score = best epoch's validation
            accuracy, seed 003) or ``"ptq"`` (calibrate, no training, seed 001). Defaults to "qat".
        epochs: QAT epochs per candidate. Defaults to 1.
        batch_size: batch size for arrays. Defaults to 64.
        seed: seeds Python, NumPy and TensorFlow before each candidate, and the shuffle order, so
            the same policy always gets the same score. Defaults to 0.
        per_channel: per-channel symmetric weights (else per-tensor). Defaults to True.
        symmetric: symmetric weight quantization. Defaults to True.
        optimizer: ``"adam"``, ``"sgd"`` or ``"rmsprop"``. Defaults to "adam".
        learning_rate: QAT learning rate. Defaults to 1e-4.
        loss: a Keras loss; None takes the model's compiled loss (a Keras 3 model's built-in loss is
            translated to tf_keras), else a (sparse) categorical
            cross-entropy inferred from the labels and the last activation. Defaults to None.
        calibration_batches: training batches used to calibrate activation ranges (ptq).
            Defaults to 4.
        bn_freeze_step: passed to ``tfmpq.quantize_model``. Defaults to None.
        reuse_model: score every candidate on one variable-bit QAT model, built, compiled and traced
            once (``tfmpq.quantize.VariableBitModel``: each candidate assigns its bits, restores the
            initial weights and a fresh optimizer state). False rebuilds a QAT model per candidate
            (the reference approach of seed 003; the same scores, slower). Defaults to True.

    Raises:
        ValueError: an unknown ``evaluation`` or ``optimizer``, ``epochs < 1`` for qat.

    Example:
    >>> ev = Evaluator(model, (x_tr, y_tr), (x_val, y_val), evaluation="ptq")
    >>> c = ev.evaluate(QuantPolicy.uniform(model, weight_bits=4))
    >>> c.accuracy, c.metrics["weight_bytes"]
    """

    def __init__(
        self,
        model,
        train,
        val,
        evaluation: str = "qat",
        epochs: int = 1,
        batch_size: int = 64,
        seed: int = 0,
        per_channel: bool = True,
        symmetric: bool = True,
        optimizer: str = "adam",
        learning_rate: float = 1e-4,
        loss=None,
        calibration_batches: int = 4,
        bn_freeze_step: int | None = None,
        reuse_model: bool = True,
    ):
        from tfmpq._keras import tf  # lazy: see the module docstring

        if evaluation not in EVALUATIONS:
            raise ValueError(
                f"Invalid value for `evaluation`: expected one of {EVALUATIONS}. Received: evaluation={evaluation!r}"
            )
        if evaluation == "qat" and (not isinstance(epochs, int) or epochs < 1):
            raise ValueError(
                f"Invalid value for `epochs`: expected an integer >= 1 for QAT. Received: epochs={epochs!r}"
            )
        if optimizer not in ("adam", "sgd", "rmsprop"):
            raise ValueError(
                f"Invalid value for `optimizer`: expected 'adam', 'sgd' or 'rmsprop'. Received: optimizer={optimizer!r}"
            )
        if calibration_batches < 1:
            raise ValueError(
                f"Invalid value for `calibration_batches`: expected >= 1. Received: {calibration_batches!r}"
            )
        compiled_loss = tf_keras_loss(getattr(model, "loss", None))
        model = as_tf_keras(model)
        self.model = model
        self.evaluation = evaluation
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.per_channel = bool(per_channel)
        self.symmetric = bool(symmetric)
        self.optimizer = optimizer
        self.learning_rate = float(learning_rate)
        self.calibration_batches = int(calibration_batches)
        self.bn_freeze_step = bn_freeze_step
        self.reuse_model = bool(reuse_model)
        # What `spec()` needs to rebuild this evaluator in a worker process.
        self._options = dict(
            evaluation=evaluation, epochs=self.epochs, batch_size=self.batch_size, seed=self.seed,
            per_channel=self.per_channel, symmetric=self.symmetric, optimizer=optimizer,
            learning_rate=self.learning_rate, calibration_batches=self.calibration_batches,
            bn_freeze_step=bn_freeze_step, reuse_model=self.reuse_model,
        )
        self._arrays = (tuple(train), tuple(val)) if isinstance(train, (tuple, list)) and isinstance(val, (tuple, list)) \
            else None
        self._search_model = None  # the VariableBitModel, built on first use
        self.num_evaluations = 0

        # The pipelines are built once. The shuffle is applied per candidate on top of the cached
        # base dataset (see _train_data) so every candidate sees the same order whatever was
        # evaluated before it: a resumed search scores exactly like an uninterrupted one.
        self._train_arrays = isinstance(train, (tuple, list))
        if self._train_arrays:
            x, y = train
            self._num_train = len(x)
            self._train_base = tf.data.Dataset.from_tensor_slices((x, y)).cache()
            n_cal = min(len(x), self.calibration_batches * self.batch_size)
            self._calib_x = np.asarray(x[:n_cal])
            self._y_example = np.asarray(y[:1])
        else:
            self._num_train = None
            self._train_base = train
            xs, ys = [], []
            for xb, yb in train.take(self.calibration_batches):
                xs.append(np.asarray(xb))
                ys.append(np.asarray(yb))
            self._calib_x = np.concatenate(xs)
            self._y_example = ys[0][:1]
        if isinstance(val, (tuple, list)):
            # Large batches: validation only runs inference (eager for ptq, graph in fit for qat).
            self._val = tf.data.Dataset.from_tensor_slices(tuple(val)).batch(max(self.batch_size, 512)).cache()
        else:
            self._val = val
        self.loss = loss if loss is not None else (compiled_loss or self._default_loss())
        # Fingerprints for the search checkpoint: a resume with other weights or data is refused.
        self._weights_sha1 = _sha1(model.get_weights())
        self._data_sha1 = _sha1(list(train) + list(val)) if self._train_arrays and isinstance(val, (tuple, list)) else None

    # -- configuration -------------------------------------------------------------------------
    def _default_loss(self):
        from tfmpq._keras import keras

        last = self.model.layers[-1]
        from_logits = getattr(last, "activation", None) is not keras.activations.softmax
        y = self._y_example
        if y.ndim >= 2 and y.shape[-1] > 1:
            return keras.losses.CategoricalCrossentropy(from_logits=from_logits)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)

    def _make_optimizer(self):
        from tfmpq._keras import keras

        cls = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
        return cls[self.optimizer](learning_rate=self.learning_rate)

    def _train_data(self):
        if not self._train_arrays:
            return self._train_base
        return self._train_base.shuffle(
            self._num_train, seed=self.seed, reshuffle_each_iteration=True
        ).batch(self.batch_size)

    def signature(self) -> dict:
        """A JSON-able description of what a score means; stored in search checkpoints."""
        return {
            "model": self.model.name,
            "num_params": int(self.model.count_params()),
            "evaluation": self.evaluation,
            "epochs": self.epochs if self.evaluation == "qat" else 0,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "per_channel": self.per_channel,
            "symmetric": self.symmetric,
            "optimizer": self.optimizer if self.evaluation == "qat" else None,
            "learning_rate": self.learning_rate if self.evaluation == "qat" else None,
            "calibration_batches": self.calibration_batches,
            "weights_sha1": self._weights_sha1,
            "data_sha1": self._data_sha1,
        }

    def spec(self) -> "EvaluatorSpec":
        """A picklable recipe that rebuilds this evaluator in another process (see ``tfmpq.search.executors``).

        It holds the float model as ``.keras`` bytes, the training and validation arrays and the
        options, so a worker receives them once and then scores policies exactly as this evaluator does.

        Raises:
            ValueError: ``train`` or ``val`` was a ``tf.data.Dataset`` (only arrays can be shipped), or
                the loss cannot be serialized.
        """
        if self._arrays is None:
            raise ValueError(
                "Cannot send this Evaluator to worker processes: `train` and `val` must be (x, y) arrays, not "
                "tf.data.Dataset objects (a dataset pipeline cannot be shipped). Pass arrays, or use executor='serial'."
            )
        from tfmpq._keras import keras

        loss = self.loss
        if not isinstance(loss, str):
            try:
                loss = {"keras_config": keras.losses.serialize(loss)}
                keras.losses.deserialize(loss["keras_config"])
            except Exception as e:
                raise ValueError(
                    f"Cannot send this Evaluator to worker processes: its `loss` ({self.loss!r}) cannot be "
                    f"serialized by Keras ({e}). Pass a built-in loss or a registered Loss subclass."
                ) from None
        return EvaluatorSpec(_model_bytes(self.model), self._arrays[0], self._arrays[1], loss, dict(self._options))

    def representative_data(self) -> np.ndarray:
        """The calibration samples (``calibration_batches`` training batches of inputs); also what
        ``Result.export`` hands the TFLite converter."""
        return self._calib_x

    # -- scoring -------------------------------------------------------------------------------
    def metrics(self, policy) -> dict:
        """``tfmpq.metrics.summary(model, policy)``, computed without building a model."""
        from tfmpq import metrics as _metrics

        return _jsonable(_metrics.summary(self.model, policy, per_channel=self.per_channel))

    def build(self, policy, epochs: int | None = None, evaluation: str | None = None, reuse: bool = False):
        """Quantizes the float model with ``policy`` and trains (qat) or calibrates (ptq) it.

        Args:
            policy: a ``QuantPolicy`` of the model.
            epochs: QAT epochs; None uses the evaluator's ``epochs``. Ignored for ptq.
            evaluation: ``"qat"`` or ``"ptq"``; None uses the evaluator's. Defaults to None.
            reuse: use the shared variable-bit search model (the returned model is then only valid
                until the next candidate); False builds a standalone QAT model, what export and
                fine-tuning need. Defaults to False.

        Returns:
            ``(qat_model, accuracy, info)``: the model holding the best epoch's weights, its validation
            accuracy (NaN if training diverged) and ``info`` (``val_accuracy`` per epoch, ``loss``,
            ``step_seconds``: the steady-state time of the training and validation steps).
        """
        from tfmpq._keras import keras
        from tfmpq.quantize import calibrate, quantize_model

        if reuse:
            qat = self._reused_model(policy)
        else:
            keras.backend.clear_session()  # keeps memory flat across hundreds of candidates
            keras.utils.set_random_seed(self.seed)
            qat = quantize_model(
                self.model, policy, per_channel=self.per_channel, symmetric=self.symmetric,
                bn_freeze_step=self.bn_freeze_step,
            )
        self._seed_everything(tensorflow=not reuse)
        info: dict = {}
        if (evaluation or self.evaluation) == "ptq":
            calibrate(qat, self._calib_x, batch_size=self.batch_size)
            return qat, self._accuracy(qat), info
        if not reuse:
            qat.compile(optimizer=self._make_optimizer(), loss=self.loss, metrics=["accuracy"])
        best = _best_weights_callback()
        timer = _step_timer()
        hist = qat.fit(
            self._train_data(),
            epochs=self.epochs if epochs is None else int(epochs),
            validation_data=self._val,
            verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN(), best, timer],
        )
        val_acc = [float(v) for v in hist.history.get("val_accuracy", [])]
        losses = [float(v) for v in hist.history.get("loss", [])]
        info = {"val_accuracy": val_acc, "loss": losses, "step_seconds": timer.steady_seconds()}
        if not val_acc or not all(math.isfinite(v) for v in losses + val_acc):
            return qat, float("nan"), info
        best.restore(qat)
        return qat, max(val_acc), info  # seed 003, 2.2: "validation accuracy after each [epoch], best taken"

    def _seed_everything(self, tensorflow: bool = True) -> None:
        """Seeds Python and NumPy, and TensorFlow when `tensorflow`.

        TensorFlow's `set_seed` clears the eager kernel cache, so the next call of the traced train
        function is re-instantiated and re-optimised (about 9 s of a MobileNet-0.25 candidate). The
        reused model does not need it: the dataset shuffle has its own op seed, and its Dropout/noise
        layers draw from generators whose state `VariableBitModel.reset` restores.
        """
        import random

        from tfmpq._keras import keras

        if tensorflow:
            keras.utils.set_random_seed(self.seed)
        else:
            random.seed(self.seed)
            np.random.seed(self.seed)

    def _reused_model(self, policy):
        """The shared variable-bit model, set to ``policy`` and reset to the initial state."""
        from tfmpq._keras import keras
        from tfmpq.quantize import VariableBitModel

        if self._search_model is None:
            keras.utils.set_random_seed(self.seed)
            self._search_model = VariableBitModel(
                self.model, per_channel=self.per_channel, symmetric=self.symmetric, bn_freeze_step=self.bn_freeze_step
            )
            if self.evaluation == "qat":
                self._search_model.model.compile(optimizer=self._make_optimizer(), loss=self.loss, metrics=["accuracy"])
        self._search_model.set_policy(policy)
        self._search_model.reset()
        return self._search_model.model

    def _accuracy(self, model) -> float:
        """Validation accuracy by eager inference (no compile: ~2 s saved per ptq candidate).

        Matches Keras' "accuracy": argmax for multi-class outputs (sparse or one-hot labels), a 0.5
        threshold (0 for logits) for a single output unit. NaN when an output is not finite.
        """
        correct = total = 0
        for xb, yb in self._val:
            out = np.asarray(model(xb, training=False))
            if not np.all(np.isfinite(out)):
                return float("nan")
            yb = np.asarray(yb)
            if out.shape[-1] == 1:
                threshold = 0.0 if getattr(self.loss, "get_config", lambda: {})().get("from_logits") else 0.5
                pred, truth = (out[..., 0] > threshold).astype(int), yb.reshape(len(yb), -1)[:, 0].astype(int)
            else:
                pred = out.argmax(-1)
                truth = yb.argmax(-1) if yb.ndim == out.ndim and yb.shape[-1] == out.shape[-1] else yb.reshape(pred.shape)
            correct += int(np.sum(pred == truth))
            total += len(pred)
        return correct / total if total else float("nan")

    def evaluate(self, policy) -> Candidate:
        """Scores one policy.

        Args:
            policy: a ``QuantPolicy`` of the model.

        Returns:
            A :class:`Candidate`; ``status="failed"`` (accuracy None) when training diverged to NaN.

        Raises:
            tfmpq.errors.PolicyError: the policy does not fit the model.
        """
        start = time.perf_counter()
        metrics = self.metrics(policy)
        _, acc, info = self.build(policy, reuse=self.reuse_model)
        self.num_evaluations += 1
        seconds = time.perf_counter() - start
        if not math.isfinite(acc):
            return Candidate(policy, None, metrics, seconds, status="failed",
                             error="training diverged (non-finite loss or accuracy)", info=info)
        return Candidate(policy, acc, metrics, seconds, info=info)

    def finetune(self, policy, epochs: int):
        """QAT fine-tuning of one policy for ``epochs`` epochs (seed 003: the front, 50 epochs).

        Returns:
            ``(candidate, model)``: the score after fine-tuning and the fine-tuned QAT model.
        """
        if epochs < 1:
            raise ValueError(f"Invalid value for `epochs`: expected >= 1. Received: epochs={epochs!r}")
        start = time.perf_counter()
        metrics = self.metrics(policy)
        # fine-tuning always trains (seed 003), whatever the search scored with
        model, acc, info = self.build(policy, epochs=epochs, evaluation="qat")
        seconds = time.perf_counter() - start
        if not math.isfinite(acc):
            return Candidate(policy, None, metrics, seconds, status="failed",
                             error="fine-tuning diverged", info=info), model
        return Candidate(policy, acc, metrics, seconds, info=info), model


@dataclass
class EvaluatorSpec:
    """A picklable recipe of an :class:`Evaluator` (``Evaluator.spec()``); calling it rebuilds one.

    Attributes:
        model_bytes: the float model saved in the ``.keras`` format.
        train, val: the ``(x, y)`` arrays.
        loss: a Keras loss name, or ``{"keras_config": ...}`` from ``keras.losses.serialize``.
        options: the other :class:`Evaluator` arguments.
    """

    model_bytes: bytes
    train: tuple
    val: tuple
    loss: Any
    options: dict

    def __call__(self) -> Evaluator:
        from tfmpq._keras import keras

        model = _model_from_bytes(self.model_bytes)
        loss = self.loss
        if isinstance(loss, dict):
            loss = keras.losses.deserialize(loss["keras_config"])
        return Evaluator(model, self.train, self.val, loss=loss, **self.options)


def _model_bytes(model) -> bytes:
    """The model as ``.keras`` file bytes."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tfmpq-spec-") as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def _model_from_bytes(data: bytes):
    """Inverse of :func:`_model_bytes`. ``safe_mode=False``: the bytes come from this process's own
    model (a Lambda layer's code is trusted)."""
    import os
    import tempfile

    from tfmpq._keras import keras

    with tempfile.TemporaryDirectory(prefix="tfmpq-spec-") as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(data)
        try:
            return keras.models.load_model(path, compile=False, safe_mode=False)
        except Exception as e:
            raise ValueError(
                f"A worker could not rebuild the float model from its .keras copy ({type(e).__name__}: {e}). "
                "Custom layers must be importable and registered with keras.saving.register_keras_serializable."
            ) from None


def configure_tensorflow(threads: int | None = None, use_gpu: bool = True) -> bool:
    """Sets up this process's TensorFlow before its first op (the settings are fixed after it).

    Worker processes of a parallel search call it first thing; call it yourself to give a serial run
    the workers' thread count (QAT scores on CPU depend on it: the order of float sums).

    Args:
        threads: caps the intra-op thread pool (inter-op: at most 2), so that N workers share the
            CPUs instead of oversubscribing them; None leaves TensorFlow's default.
        use_gpu: False hides the GPUs (a Ray actor given no GPU must not take one's memory); True lets
            each visible GPU grow its memory on demand, so several workers can share it.

    Returns:
        Whether ``threads`` is in effect (True when None). When TensorFlow has already run an op, the
        thread pools cannot change: a ``RuntimeWarning`` says so and False is returned.
    """
    import warnings

    from tfmpq._keras import tf

    applied = True
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))
        except RuntimeError:
            applied = tf.config.threading.get_intra_op_parallelism_threads() == int(threads)
            if not applied:
                warnings.warn(
                    f"configure_tensorflow(threads={threads}) has no effect: TensorFlow already runs in this process "
                    "with its thread pools fixed. Call it before TensorFlow's first op.", RuntimeWarning, stacklevel=2,
                )
    try:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus and not use_gpu:
            tf.config.set_visible_devices([], "GPU")
        elif gpus:
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
    except (RuntimeError, ValueError):  # the GPUs were initialised already: their settings stay
        pass
    return applied


def _sha1(arrays) -> str:
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _step_timer():
    """A Keras callback timing the training and validation steps; `steady_seconds()` is their
    steady-state cost (median step time x steps), so that tracing and set-up count as overhead."""
    import time as _time

    from tfmpq._keras import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = {"train": [], "test": []}
            self._t0 = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self._t0 = _time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times["train"].append(_time.perf_counter() - self._t0)

        def on_test_batch_begin(self, batch, logs=None):
            self._t0 = _time.perf_counter()

        def on_test_batch_end(self, batch, logs=None):
            self.times["test"].append(_time.perf_counter() - self._t0)

        def steady_seconds(self) -> float:
            return float(sum(np.median(t) * len(t) for t in self.times.values() if t))

    return StepTimer()


def _best_weights_callback():
    """A Keras callback keeping the weights of the epoch with the best ``val_accuracy``."""
    from tfmpq._keras import keras

    class BestWeights(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = -math.inf
            self.best_weights = None

        def on_epoch_end(self, epoch, logs=None):
            acc = (logs or {}).get("val_accuracy")
            if acc is not None and math.isfinite(acc) and acc > self.best:
                self.best = acc
                self.best_weights = self.model.get_weights()

        def restore(self, model) -> None:
            if self.best_weights is not None:
                model.set_weights(self.best_weights)

    return BestWeights()
