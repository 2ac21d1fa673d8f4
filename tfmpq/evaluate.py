"""Scoring one quantization policy: a policy in, a :class:`Candidate` out.

The :class:`Evaluator` knows no search strategy; every strategy (and every user scoring their own
policies) goes through it. Two evaluation modes:

* ``evaluation="qat"`` (Šafář et al., sec. 2.2): quantize from the float weights, train ``epochs``
  epochs of quantization-aware training, score = the best epoch's validation accuracy.
* ``evaluation="ptq"`` (Santini, sec. II.A and III): calibrate the quantized model's activation
  ranges on a few training batches, no training, score = validation accuracy.
* ``evaluation="oneshot"`` (Shen et al., AAAI 2021; Bulat & Tzimiropoulos, ICCV 2021): train one
  shared variable-bit model for ``epochs`` epochs under sampled policies once (the sandwich rule,
  ``tfmpq.quantize.oneshot``); a candidate then costs setting its bits, re-estimating BN statistics
  and activation ranges on a few training batches, and one validation pass.

This module is the search's TensorFlow side: :class:`~tfmpq.candidate.Candidate` (what the journal
reloads) lives in ``tfmpq.candidate``, so ``tfmpq.search`` reads and ranks runs without TensorFlow.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfmpq.convert import as_tf_keras, tf_keras_loss
from tfmpq._keras import keras, tf
from tfmpq.accuracy import hits, model_hits
from tfmpq.candidate import Candidate, jsonable
from tfmpq.checks import check_data, num_samples, take_samples
from tfmpq.metrics import summary as metrics_summary
from tfmpq.quantize import VariableBitModel, calibrate, quantize_model
from tfmpq.quantize import oneshot as _oneshot
from tfmpq.policy import QUANT_BITS
from tfmpq.quantize.layers import BN_FOLDS

__all__ = ["Evaluator", "EvaluatorSpec", "Candidate", "configure_tensorflow", "EVALUATIONS"]

EVALUATIONS = ("qat", "ptq", "oneshot")
ONESHOT_FILE = "oneshot"  # <cache_dir>/oneshot-<fingerprint>.npz (+ .json): the trained shared weights


class Evaluator:
    """Scores quantization policies of one float model on one dataset.

    Args:
        model: the trained float Keras model (functional or Sequential; tf_keras or Keras 3, which is
            converted with ``tfmpq.convert.as_tf_keras``).
        train: training data, ``(x, y)`` arrays or a batched ``tf.data.Dataset``.
        val: validation data, same forms as ``train``.
        evaluation: ``"qat"`` (train ``epochs`` epochs of QAT, score = best epoch's validation
            accuracy, Šafář), ``"ptq"`` (calibrate, no training, Santini) or ``"oneshot"`` (score
            on a shared variable-bit model trained once, after re-calibrating its BN statistics and
            activation ranges for the policy). Defaults to "qat".
        epochs: QAT epochs per candidate; for ``"oneshot"``, the epochs of the one-time shared
            training. Defaults to 1.
        batch_size: batch size for arrays. Defaults to 64.
        seed: seeds Python, NumPy and TensorFlow before each candidate, and the shuffle order, so
            the same policy always gets the same score. Defaults to 0.
        per_channel: per-channel symmetric weights (else per-tensor). Defaults to True.
        symmetric: symmetric weight quantization. Defaults to True.
        optimizer: ``"adam"``, ``"sgd"`` or ``"rmsprop"``. Defaults to "adam".
        learning_rate: QAT learning rate (of every candidate, fine-tune and re-score). Defaults to 1e-4.
        loss: a Keras loss; None takes the model's compiled loss (a Keras 3 model's built-in loss is
            translated to tf_keras), else a (sparse) categorical or binary cross-entropy inferred
            from the labels and the output, with ``from_logits`` off when the model ends in a
            softmax/sigmoid (activation, ``Activation`` or ``Softmax`` layer). Defaults to None.
        calibration_batches: training batches used to calibrate activation ranges (ptq).
            Defaults to 4.
        bn_freeze_step: passed to ``tfmpq.quantize_model``. Defaults to None.
        bn_fold: the QAT training forward of folded BatchNormalization, passed to
            ``tfmpq.quantize_model``: ``"one_conv"`` (one convolution per step, Krishnamoorthi 2018,
            sec. 3.2) or ``"two_conv"`` (an extra float convolution for the batch statistics, Jacob et
            al. 2018, sec. 3.2). Defaults to "one_conv".
        reuse_model: score every candidate on one variable-bit QAT model, built, compiled and traced
            once (``tfmpq.quantize.VariableBitModel``: each candidate assigns its bits, restores the
            initial weights and a fresh optimizer state). False rebuilds a QAT model per candidate
            (the reference approach of Šafář; the same scores, slower). Defaults to True.
        distill: oneshot: the lower-bit policies of each step learn from the highest-bit policy's
            output (in-place distillation, Yu & Huang 2019, sec. 3.4). Defaults to False.
        num_random_policies: oneshot: random policies per training step besides the highest- and
            the lowest-bit ones (the sandwich rule). Defaults to 2.
        oneshot_bits: oneshot: the weight bit-widths sampled per group while training (those the
            search will ask for). Defaults to ``(2, ..., 8)``.
        oneshot_activation_bits: oneshot: the activation bit-widths sampled per group. Defaults to
            ``(8,)``.
        oneshot_learning_rate: oneshot: the learning rate of the one-time shared training (its
            optimizer is ``optimizer``); None uses ``learning_rate``. The fine-tunes and QAT re-scores
            of a one-shot search use ``learning_rate``, as a QAT search's candidates do. Starting from
            trained float weights, a rate as low as QAT's ranks best: on the demo CNN 1e-4 agreed with
            stand-alone QAT at Kendall tau 0.62 (mean of 3 seeds), 3e-4 at 0.47 (2 seeds), 1e-3 at
            0.48 (README, ``bench.oneshot``). Defaults to None.
        cache_dir: oneshot: where the trained shared weights are saved (``oneshot-<fingerprint>.npz``
            and ``.json``, the fingerprint covering the model, data and options) and loaded from
            instead of training again; ``tfmpq.search.run`` sets it to the run directory. None keeps
            them in memory only. Defaults to None.

    Raises:
        ValueError: an unknown ``evaluation``, ``optimizer`` or ``bn_fold``, ``epochs < 1`` for qat; ``train`` or
            ``val`` that cannot be trained or scored on (``tfmpq.checks.check_data``: empty, NaN/Inf,
            a sample shape other than the model's, labels outside its classes, x and y of different
            lengths): the message names the argument; a model with several outputs (a model with
            several inputs takes ``x`` as a list / tuple or a dict by input name).

    Example:
    >>> ev = Evaluator(model, (x_tr, y_tr), (x_val, y_val), evaluation="ptq")
    >>> c = ev.evaluate(QuantPolicy.uniform(model, weight_bits=4))
    >>> c.accuracy, c.metrics["weight_bytes"]
    >>> os_ev = Evaluator(model, (x_tr, y_tr), (x_val, y_val), evaluation="oneshot", epochs=4, cache_dir="runs/os")
    >>> os_ev.evaluate(policy).accuracy, os_ev.oneshot_info["seconds"]   # the shared training: once
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
        distill: bool = False,
        num_random_policies: int = 2,
        oneshot_bits=QUANT_BITS,
        oneshot_activation_bits=(8,),
        oneshot_learning_rate: float | None = None,
        cache_dir=None,
        bn_fold: str = "one_conv",
    ):
        if evaluation not in EVALUATIONS:
            raise ValueError(
                f"Invalid value for `evaluation`: expected one of {EVALUATIONS}. Received: evaluation={evaluation!r}"
            )
        if evaluation == "qat" and (not isinstance(epochs, int) or epochs < 1):
            raise ValueError(
                f"Invalid value for `epochs`: expected an integer >= 1 for QAT. Received: epochs={epochs!r}"
            )
        if evaluation == "oneshot" and (not isinstance(epochs, int) or epochs < 1):
            raise ValueError(
                f"Invalid value for `epochs`: expected an integer >= 1 (epochs of the shared one-shot training). "
                f"Received: epochs={epochs!r}"
            )
        if not isinstance(num_random_policies, int) or num_random_policies < 0:
            raise ValueError(
                f"Invalid value for `num_random_policies`: expected an integer >= 0. Received: {num_random_policies!r}"
            )
        for arg, values in (("oneshot_bits", oneshot_bits), ("oneshot_activation_bits", oneshot_activation_bits)):
            if (not values or not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in values)
                    or any(b not in QUANT_BITS + (16, 32) for b in values)):
                raise ValueError(
                    f"Invalid value for `{arg}`: expected a non-empty sequence of bit-widths in 2..8 or 16/32. "
                    f"Received: {arg}={values!r}"
                )
        if optimizer not in ("adam", "sgd", "rmsprop"):
            raise ValueError(
                f"Invalid value for `optimizer`: expected 'adam', 'sgd' or 'rmsprop'. Received: optimizer={optimizer!r}"
            )
        if bn_fold not in BN_FOLDS:
            raise ValueError(
                f"Invalid value for `bn_fold`: expected one of {BN_FOLDS}. Received: bn_fold={bn_fold!r}"
            )
        if calibration_batches < 1:
            raise ValueError(
                f"Invalid value for `calibration_batches`: expected >= 1. Received: {calibration_batches!r}"
            )
        for arg, rate in (("learning_rate", learning_rate), ("oneshot_learning_rate", oneshot_learning_rate)):
            if rate is None and arg == "oneshot_learning_rate":
                continue  # None: learning_rate's
            if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not 0 < rate < math.inf:
                raise ValueError(f"Invalid value for `{arg}`: expected a positive finite number. Received: {arg}={rate!r}")
        compiled_loss = tf_keras_loss(getattr(model, "loss", None))
        model = as_tf_keras(model)
        if len(getattr(model, "outputs", None) or ()) > 1:
            raise ValueError(
                f"Invalid value for `model`: the Evaluator scores a classifier with one output. Received: "
                f"`{model.name}` with outputs {list(model.output_names)}. Score one of them: "
                "keras.Model(model.inputs, model.outputs[i]).")

        # Bad data fails here, before a model is built or a step is trained (issue 13).
        train = check_data(model, train, name="train")
        val = check_data(model, val, name="val")
        self.model = model
        self.evaluation = evaluation
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.per_channel = bool(per_channel)
        self.symmetric = bool(symmetric)
        self.optimizer = optimizer
        self.learning_rate = float(learning_rate)
        self.oneshot_learning_rate = float(learning_rate if oneshot_learning_rate is None else oneshot_learning_rate)
        self.calibration_batches = int(calibration_batches)
        self.bn_freeze_step = bn_freeze_step
        self.reuse_model = bool(reuse_model)
        self.distill = bool(distill)
        self.num_random_policies = int(num_random_policies)
        self.oneshot_bits = tuple(sorted(int(b) for b in set(oneshot_bits)))
        self.oneshot_activation_bits = tuple(sorted(int(b) for b in set(oneshot_activation_bits)))
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        #: oneshot: how the shared weights came to be (``"trained"``, ``"loaded"`` from ``cache_dir``,
        #: ``"shipped"`` to a worker), the one-time training cost and its losses; None until first use.
        self.oneshot_info: dict | None = None
        self.num_shared_trainings = 0  # shared one-shot trainings run by this evaluator (0 after a load)
        self._oneshot_model = None  # the shared VariableBitModel (oneshot), apart from the QAT one
        self._oneshot_snapshot = None
        self.bn_fold = bn_fold
        # What `spec()` needs to rebuild this evaluator in a worker process.
        self._options = dict(
            evaluation=evaluation, epochs=self.epochs, batch_size=self.batch_size, seed=self.seed,
            per_channel=self.per_channel, symmetric=self.symmetric, optimizer=optimizer,
            learning_rate=self.learning_rate, calibration_batches=self.calibration_batches,
            bn_freeze_step=bn_freeze_step, reuse_model=self.reuse_model, bn_fold=bn_fold, distill=self.distill,
            num_random_policies=self.num_random_policies, oneshot_bits=self.oneshot_bits,
            oneshot_activation_bits=self.oneshot_activation_bits, oneshot_learning_rate=self.oneshot_learning_rate,
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
            self._num_train = num_samples(x)  # x: one array, or a tuple of them for several inputs
            self._train_base = tf.data.Dataset.from_tensor_slices((x, y)).cache()
            n_cal = min(self._num_train, self.calibration_batches * self.batch_size)
            self._calib_x = take_samples(x, n_cal)
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
            # one input array (a multi-input model's list or dict of arrays keeps the pipeline)
            self._val_arrays = tuple(val) if all(hasattr(a, "shape") for a in val) else None
        else:
            self._val = val
            self._val_arrays = None
        self._val_tensors = None  # see _val_batches
        self.loss = loss if loss is not None else (compiled_loss or self._default_loss())
        # Fingerprints for the search checkpoint: a resume with another model, weights or data is refused.
        self._weights_sha1 = _sha1(model.get_weights())
        self._config_sha1 = hashlib.sha1(
            json.dumps(model.get_config(), sort_keys=True, default=str).encode()).hexdigest()
        self._data_sha1 = _sha1(list(train) + list(val)) if self._train_arrays and isinstance(val, (tuple, list)) else None
        self._data_shapes = {k: _shapes(d) for k, d in (("train", train), ("val", val))}

    # -- configuration -------------------------------------------------------------------------
    def _default_loss(self):

        compiled = getattr(self.model, "loss", None)
        if compiled:
            return compiled
        from_logits = not ends_in_probabilities(self.model)
        y = self._y_example
        if int(self.model.output_shape[-1] or 0) == 1:
            return keras.losses.BinaryCrossentropy(from_logits=from_logits)
        if y.ndim >= 2 and y.shape[-1] > 1:
            return keras.losses.CategoricalCrossentropy(from_logits=from_logits)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)

    def _make_optimizer(self, learning_rate: float | None = None):

        cls = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
        return cls[self.optimizer](learning_rate=self.learning_rate if learning_rate is None else learning_rate)

    def _train_data(self):
        if not self._train_arrays:
            return self._train_base
        return self._train_base.shuffle(
            self._num_train, seed=self.seed, reshuffle_each_iteration=True
        ).batch(self.batch_size)

    def signature(self) -> dict:
        """A JSON-able description of what a score means; stored in search checkpoints."""
        sig = {
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
            **({"oneshot": self._oneshot_options()} if self.evaluation == "oneshot" else {}),
            "weights_sha1": self._weights_sha1,
            "model_config_sha1": self._config_sha1,
            "data_sha1": self._data_sha1,
            "data_shapes": self._data_shapes,
        }
        if self.evaluation in ("qat", "oneshot"):  # ptq never trains: its scores (and signatures) do not depend on it
            sig["bn_fold"] = self.bn_fold
        return sig

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
        shared = None
        if self.evaluation == "oneshot":
            # trained (or loaded) here, once, and shipped: workers load these weights, never retrain
            vbm = self._shared_model()
            shared = {"values": [v.numpy() for v in vbm.model.variables], "info": dict(self.oneshot_info)}
        return EvaluatorSpec(_model_bytes(self.model), self._arrays[0], self._arrays[1], loss, dict(self._options),
                             shared)

    def representative_data(self) -> np.ndarray:
        """The calibration samples (``calibration_batches`` training batches of inputs); also what
        ``Result.export`` hands the TFLite converter."""
        return self._calib_x

    # -- scoring -------------------------------------------------------------------------------
    def metrics(self, policy) -> dict:
        """``tfmpq.metrics.summary(model, policy)``, computed without building a model."""

        return jsonable(metrics_summary(self.model, policy, per_channel=self.per_channel))

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

        if (evaluation or self.evaluation) == "oneshot":
            if not reuse:
                raise ValueError(
                    "Invalid value for `reuse`: a one-shot evaluator scores candidates on its shared model only "
                    "(reuse=True). For a standalone QAT model (export), fine-tune: evaluator.finetune(policy, "
                    "epochs), result.finetune(epochs) or `tfmpq export --finetune EPOCHS`."
                )
            return self._oneshot_build(policy)
        training = (evaluation or self.evaluation) == "qat"
        if reuse:
            qat = self._reused_model(policy, compile_model=training)
        else:
            keras.backend.clear_session()  # keeps memory flat across hundreds of candidates
            keras.utils.set_random_seed(self.seed)
            qat = quantize_model(
                self.model, policy, per_channel=self.per_channel, symmetric=self.symmetric,
                bn_freeze_step=self.bn_freeze_step, bn_fold=self.bn_fold,
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
        return qat, max(val_acc), info  # Šafář, sec. 2.2: "validation accuracy after each [epoch], best taken"

    def _seed_everything(self, tensorflow: bool = True) -> None:
        """Seeds Python and NumPy, and TensorFlow when `tensorflow`.

        TensorFlow's `set_seed` clears the eager kernel cache, so the next call of the traced train
        function is re-instantiated and re-optimised (about 9 s of a MobileNet-0.25 candidate). The
        reused model does not need it: the dataset shuffle has its own op seed, and its Dropout/noise
        layers draw from generators whose state `VariableBitModel.reset` restores.
        """

        if tensorflow:
            keras.utils.set_random_seed(self.seed)
        else:
            random.seed(self.seed)
            np.random.seed(self.seed)

    def _reused_model(self, policy, compile_model: bool = False):
        """The shared variable-bit model, set to ``policy`` and reset to the initial state (compiled,
        once, for QAT evaluators or when ``compile_model``: e.g. fine-tuning after a ptq search)."""

        if self._search_model is None:
            keras.utils.set_random_seed(self.seed)
            self._search_model = VariableBitModel(
                self.model, per_channel=self.per_channel, symmetric=self.symmetric, bn_freeze_step=self.bn_freeze_step,
                bn_fold=self.bn_fold,
            )
        if (self.evaluation == "qat" or compile_model) and getattr(self._search_model.model, "optimizer", None) is None:
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
        for xb, yb in self._val_batches():
            h = self._hits(np.asarray(model(xb, training=False)), np.asarray(yb))
            if h is None:
                return float("nan")
            correct += int(np.sum(h))
            total += len(h)
        return correct / total if total else float("nan")

    def _val_batches(self):
        """The validation batches for eager scoring. From arrays: tensors made once (iterating the tf.data
        pipeline cost ~0.1 s per candidate on the demo CNN, a fifth of a one-shot candidate's time); a
        dataset the user passed is iterated as given (it may not fit in memory)."""
        if self._val_tensors is None:
            if self._val_arrays is None:
                return self._val
            x, y = self._val_arrays
            b = max(self.batch_size, 512)
            self._val_tensors = [(tf.constant(x[i:i + b]), np.asarray(y[i:i + b])) for i in range(0, len(x), b)]
        return self._val_tensors

    def _from_logits(self) -> bool:
        return bool(getattr(self.loss, "get_config", lambda: {})().get("from_logits"))

    def _hits(self, out: np.ndarray, yb: np.ndarray) -> np.ndarray | None:
        """Per sample, whether ``out`` is right for labels ``yb`` (None: non-finite output): ``tfmpq.accuracy.hits``."""
        return hits(out, yb, self._from_logits())

    def correct(self, model, data, name: str = "test", batch_size: int = 512) -> np.ndarray:
        """Per sample of ``data``, whether ``model`` classifies it correctly (the evaluator's notion of
        accuracy). For held-out reporting: nothing is chosen with it.

        Args:
            model: a float or QAT Keras model of this evaluator's float model.
            data: ``(x, y)`` arrays.
            name: the argument's name in error messages. Defaults to "test".
            batch_size: inference batch size. Defaults to 512.

        Returns:
            A bool array of ``len(y)``; all False when the model's outputs are not finite.

        Raises:
            ValueError: bad ``data`` (``tfmpq.checks.check_data``).
        """

        x, y = check_data(self.model, data, name=name)
        return model_hits(model, x, y, batch_size, self._from_logits())

    def float_accuracy(self) -> float:
        """The float model's validation accuracy (cached): the reference of a budget report
        (Tmamna et al. 2024, eq. 8: delta accuracy = quantized - float)."""
        if getattr(self, "_float_accuracy", None) is None:
            self._float_accuracy = self._accuracy(self.model)
        return self._float_accuracy

    def finetune_float(self, epochs: int):
        """The fair float reference: the float model trained ``epochs`` more epochs with the QAT recipe
        (same optimizer, learning rate, loss, batch size, data order and best-epoch choice on val).

        A QAT score above the float model's own score after no extra training can be training, not
        quantization; compare QAT fine-tunes with this instead (issue 12, item 3).

        Args:
            epochs: training epochs, >= 1.

        Returns:
            ``(val_accuracy, model)``: the best epoch's validation accuracy (NaN if training diverged)
            and a copy of the float model holding that epoch's weights (the evaluator's model is
            never changed).
        """

        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Invalid value for `epochs`: expected an integer >= 1. Received: epochs={epochs!r}")
        self._seed_everything()
        model = keras.models.clone_model(self.model)
        model.set_weights(self.model.get_weights())
        model.compile(optimizer=self._make_optimizer(), loss=self.loss, metrics=["accuracy"])
        best = _best_weights_callback()
        hist = model.fit(self._train_data(), epochs=epochs, validation_data=self._val, verbose=0,
                         callbacks=[keras.callbacks.TerminateOnNaN(), best])
        val_acc = [float(v) for v in hist.history.get("val_accuracy", [])]
        if not val_acc or not all(math.isfinite(v) for v in val_acc + hist.history.get("loss", [])):
            return float("nan"), model
        best.restore(model)
        return max(val_acc), model

    # -- one-shot ------------------------------------------------------------------------------
    def _oneshot_options(self) -> dict:
        return {"epochs": self.epochs, "distill": self.distill, "num_random_policies": self.num_random_policies,
                "bits": list(self.oneshot_bits), "activation_bits": list(self.oneshot_activation_bits),
                "optimizer": self.optimizer, "learning_rate": self.oneshot_learning_rate, "bn_fold": self.bn_fold}

    def oneshot_path(self) -> str | None:
        """``<cache_dir>/oneshot-<fingerprint>.npz``, where the shared weights are saved; None without
        ``cache_dir``. The fingerprint covers the model, its weights, the data and every option that
        changes the training (not ``calibration_batches``), so a changed problem never loads stale
        weights."""
        if self.cache_dir is None:
            return None
        # calibration_batches changes the scoring only, not the trained weights
        key = json.dumps({k: v for k, v in self.signature().items() if k not in ("num_params", "calibration_batches")},
                         sort_keys=True, default=str)
        return os.path.join(self.cache_dir, f"{ONESHOT_FILE}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz")

    def _new_oneshot_model(self):
        keras.utils.set_random_seed(self.seed)
        return VariableBitModel(self.model, per_channel=self.per_channel, symmetric=self.symmetric,
                                bn_freeze_step=self.bn_freeze_step, bn_fold=self.bn_fold)

    def _load_shared(self, values, info: dict) -> None:
        """Sets the shared one-shot model's variables to ``values`` (trained elsewhere: a file, the driver)."""
        vbm = self._oneshot_model or self._new_oneshot_model()
        variables = vbm.model.variables
        if len(values) != len(variables) or any(tuple(np.shape(a)) != tuple(v.shape) for a, v in zip(values, variables)):
            raise ValueError(
                f"The shared one-shot weights ({len(values)} arrays) do not fit this model's one-shot model "
                f"({len(variables)} variables): they were trained for another model."
            )
        for v, a in zip(variables, values):
            v.assign(a)
        self._oneshot_model = vbm
        self._oneshot_snapshot = None
        self.oneshot_info = info

    def _shared_model(self):
        """The trained shared one-shot ``VariableBitModel``: trained on first use (the one-time cost),
        or loaded from ``cache_dir`` when a previous run saved it."""
        if self._oneshot_model is not None and self.oneshot_info is not None:
            return self._oneshot_model
        path = self.oneshot_path()
        if path is not None and os.path.exists(path):
            with np.load(path) as f:
                values = [f[f"arr_{i}"] for i in range(len(f.files))]
            with open(path[:-4] + ".json") as f:
                info = json.load(f)
            self._load_shared(values, dict(info, source="loaded", path=path))
            return self._oneshot_model
        vbm = self._new_oneshot_model()
        self._seed_everything()
        info = _oneshot.train_shared(
            vbm, self._train_data, epochs=self.epochs, optimizer=self._make_optimizer(self.oneshot_learning_rate),
            loss=self.loss,
            weight_choices=self.oneshot_bits, activation_choices=self.oneshot_activation_bits,
            num_random=self.num_random_policies, distill=self.distill,
            from_logits=not ends_in_probabilities(self.model), seed=self.seed,
        )
        self.num_shared_trainings += 1
        info = dict(info, options=self._oneshot_options(), source="trained")
        if path is not None:
            os.makedirs(self.cache_dir, exist_ok=True)
            tmp = path[:-4] + ".tmp.npz"
            np.savez(tmp, *[v.numpy() for v in vbm.model.variables])
            with open(path[:-4] + ".json.tmp", "w") as f:
                json.dump(info, f, indent=1)
            os.replace(path[:-4] + ".json.tmp", path[:-4] + ".json")  # the .npz last: it marks a finished save
            os.replace(tmp, path)
            info["path"] = path
        self._oneshot_model = vbm
        self.oneshot_info = info
        return vbm

    def _oneshot_build(self, policy):
        """Sets ``policy`` on the shared model, re-calibrates it, scores it; restores the shared state.

        Returns:
            ``(model, accuracy, info)``; the model holds the re-calibrated policy until the next candidate.
        """
        vbm = self._shared_model()
        if self._oneshot_snapshot is None:  # once per shared model (a load resets it)
            self._oneshot_snapshot = _oneshot.restorer(vbm)
        self._seed_everything(tensorflow=False)
        try:
            vbm.set_policy(policy)
            _oneshot.recalibrate(vbm, self._calib_x, self.batch_size)
            acc = self._accuracy(_oneshot.inference_forward(vbm))
        finally:
            # the shared weights are exactly what training left, whatever the candidate did to them
            self._oneshot_snapshot()
        # where this process's shared weights came from: "trained", "loaded" (cache_dir) or "shipped" (a worker)
        return vbm.model, acc, {"oneshot": True, "shared": self.oneshot_info["source"]}

    def evaluate(self, policy) -> Candidate:
        """Scores one policy.

        Args:
            policy: a ``QuantPolicy`` of the model.

        Returns:
            A :class:`Candidate`; ``status="failed"`` (accuracy None) when training diverged to NaN.

        Raises:
            tfmpq.errors.PolicyError: the policy does not fit the model.
        """
        if self.evaluation == "oneshot":
            self._shared_model()  # the one-time shared training (or load): not any candidate's cost
        start = time.perf_counter()
        metrics = self.metrics(policy)
        _, acc, info = self.build(policy, reuse=self.reuse_model or self.evaluation == "oneshot")
        self.num_evaluations += 1
        seconds = time.perf_counter() - start
        if not math.isfinite(acc):
            return Candidate(policy, None, metrics, seconds, status="failed",
                             error="training diverged (non-finite loss or accuracy)", info=info)
        return Candidate(policy, acc, metrics, seconds, info=info)

    def finetune(self, policy, epochs: int, reuse: bool = False):
        """QAT fine-tuning of one policy for ``epochs`` epochs (Šafář et al.: the front, 50 epochs).

        Args:
            policy: a ``QuantPolicy`` of the model.
            epochs: QAT epochs, >= 1.
            reuse: train the shared variable-bit search model (no build or trace: much faster for short
                fine-tunes; the returned model is only valid until the next candidate). False builds a
                standalone QAT model, what export needs. Defaults to False.

        Returns:
            ``(candidate, model)``: the score after fine-tuning and the fine-tuned QAT model.
        """
        if epochs < 1:
            raise ValueError(f"Invalid value for `epochs`: expected >= 1. Received: epochs={epochs!r}")
        start = time.perf_counter()
        metrics = self.metrics(policy)
        # fine-tuning always trains (Šafář), whatever the search scored with
        model, acc, info = self.build(policy, epochs=epochs, evaluation="qat", reuse=reuse)
        seconds = time.perf_counter() - start
        if not math.isfinite(acc):
            return Candidate(policy, None, metrics, seconds, status="failed",
                             error="fine-tuning diverged", info=info), model
        return Candidate(policy, acc, metrics, seconds, info=info), model


def ends_in_probabilities(model) -> bool:
    """Whether a model's output is probabilities (a final softmax or sigmoid: a Dense/Conv with that
    activation, an ``Activation`` layer or a ``Softmax`` layer), so its loss takes ``from_logits=False``."""
    last = model.layers[-1]
    if type(last).__name__ == "Softmax":
        return True
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", activation)
    return name in ("softmax", "sigmoid")


@dataclass
class EvaluatorSpec:
    """A picklable recipe of an :class:`Evaluator` (``Evaluator.spec()``); calling it rebuilds one.

    Attributes:
        model_bytes: the float model saved in the ``.keras`` format.
        train, val: the ``(x, y)`` arrays.
        loss: a Keras loss name, or ``{"keras_config": ...}`` from ``keras.losses.serialize``.
        options: the other :class:`Evaluator` arguments.
        shared: oneshot: the trained shared model's variable values and its ``oneshot_info``, loaded
            by the rebuilt evaluator instead of training again. None otherwise.
    """

    model_bytes: bytes
    train: tuple
    val: tuple
    loss: Any
    options: dict
    shared: dict | None = None

    def __call__(self) -> Evaluator:

        model = _model_from_bytes(self.model_bytes)
        loss = self.loss
        if isinstance(loss, dict):
            loss = keras.losses.deserialize(loss["keras_config"])
        evaluator = Evaluator(model, self.train, self.val, loss=loss, **self.options)
        if self.shared is not None:
            evaluator._load_shared(self.shared["values"], dict(self.shared["info"], source="shipped"))
        return evaluator


def _model_bytes(model) -> bytes:
    """The model as ``.keras`` file bytes."""
    with tempfile.TemporaryDirectory(prefix="tfmpq-spec-") as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def _model_from_bytes(data: bytes):
    """Inverse of :func:`_model_bytes`. ``safe_mode=False``: the bytes come from this process's own
    model (a Lambda layer's code is trusted)."""

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


def _step_timer():
    """A Keras callback timing the training and validation steps; `steady_seconds()` is their
    steady-state cost (median step time x steps), so that tracing and set-up count as overhead."""

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = {"train": [], "test": []}
            self._t0 = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times["train"].append(time.perf_counter() - self._t0)

        def on_test_batch_begin(self, batch, logs=None):
            self._t0 = time.perf_counter()

        def on_test_batch_end(self, batch, logs=None):
            self.times["test"].append(time.perf_counter() - self._t0)

        def steady_seconds(self) -> float:
            return float(sum(np.median(t) * len(t) for t in self.times.values() if t))

    return StepTimer()


def _best_weights_callback():
    """A Keras callback keeping the weights of the epoch with the best ``val_accuracy``."""

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
