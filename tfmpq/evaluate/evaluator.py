"""The :class:`Evaluator`: one API over QAT scoring, PTQ scoring and the one-shot shared model.

It knows no search strategy; every strategy (and every user scoring their own policies) goes through
it. What a score means is its :class:`~tfmpq.evaluate.config.EvaluatorConfig`; the data is prepared once
(:mod:`~tfmpq.evaluate.data`); QAT models are built and trained in :mod:`~tfmpq.evaluate.qat`, PTQ
scores in :mod:`~tfmpq.evaluate.ptq`, the one-shot shared model lives in :mod:`~tfmpq.evaluate.oneshot`,
and :class:`EvaluatorSpec` rebuilds an evaluator in a worker process (:mod:`~tfmpq.evaluate.workers`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from tfmpq._keras import keras
from tfmpq.candidate import Candidate, jsonable
from tfmpq.checks import check_data
from tfmpq.convert import as_tf_keras, tf_keras_loss
from tfmpq.accuracy import model_hits
from tfmpq.evaluate import ptq, qat
from tfmpq.evaluate.config import EvaluatorConfig
from tfmpq.evaluate.data import EvalData, default_loss, model_fingerprints, seed_everything
from tfmpq.evaluate.oneshot import SharedModel
from tfmpq.evaluate.workers import model_bytes, model_from_bytes, serialized_loss
from tfmpq.metrics import summary as metrics_summary
from tfmpq.recipe import FinetuneRecipe


class Evaluator:
    """Scores quantization policies of one float model on one dataset.

    Args:
        model: the trained float Keras model (functional or Sequential; tf_keras or Keras 3, which is
            converted with ``tfmpq.convert.as_tf_keras``).
        train: training data, ``(x, y)`` arrays or a batched ``tf.data.Dataset``.
        val: validation data, same forms as ``train``.
        config: how a policy is scored: an :class:`EvaluatorConfig`; None builds one from ``**options``.
            Defaults to None.
        seed: seeds Python, NumPy and TensorFlow before each candidate, and the shuffle order, so
            the same policy always gets the same score. Defaults to 0.
        loss: a Keras loss; None takes the model's compiled loss (a Keras 3 model's built-in loss is
            translated to tf_keras), else a (sparse) categorical or binary cross-entropy inferred
            from the labels and the output, with ``from_logits`` off when the model ends in a
            softmax/sigmoid (activation, ``Activation`` or ``Softmax`` layer). Defaults to None.
        cache_dir: oneshot: where the trained shared weights are saved (``oneshot-<fingerprint>.npz``
            and ``.json``, the fingerprint covering the model, data and options) and loaded from
            instead of training again; ``tfmpq.search.run`` sets it to the run directory. None keeps
            them in memory only. Defaults to None.
        **options: the fields of :class:`EvaluatorConfig` (``evaluation``, ``epochs``, ``batch_size``,
            ``per_channel``, ``learning_rate``, ``calibration_batches``, ``distill``, ...), when
            ``config`` is None.

    Raises:
        ValueError: an invalid option (:class:`EvaluatorConfig`), or both ``config`` and ``options``;
            ``train`` or ``val`` that cannot be trained or scored on (``tfmpq.checks.check_data``: empty,
            NaN/Inf, a sample shape other than the model's, labels outside its classes, x and y of
            different lengths): the message names the argument; a model with several outputs (a model
            with several inputs takes ``x`` as a list / tuple or a dict by input name).

    Example:
    >>> ev = Evaluator(model, (x_tr, y_tr), (x_val, y_val), evaluation="ptq")
    >>> c = ev.evaluate(QuantPolicy.uniform(model, weight_bits=4))
    >>> c.accuracy, c.metrics["weight_bytes"]
    >>> os_ev = Evaluator(model, (x_tr, y_tr), (x_val, y_val), evaluation="oneshot", epochs=4, cache_dir="runs/os")
    >>> os_ev.evaluate(policy).accuracy, os_ev.oneshot_info["seconds"]   # the shared training: once
    """

    def __init__(self, model, train, val, config: EvaluatorConfig | None = None, *, seed: int = 0, loss=None,
                 cache_dir=None, **options):
        if config is None:
            config = EvaluatorConfig(**options)
        elif options:
            raise ValueError(f"Invalid arguments: pass the evaluator's options in `config` or as keywords, not "
                             f"both. Received: config and {sorted(options)}.")
        compiled_loss = tf_keras_loss(getattr(model, "loss", None))
        model = as_tf_keras(model)
        if len(getattr(model, "outputs", None) or ()) > 1:
            raise ValueError(
                f"Invalid value for `model`: the Evaluator scores a classifier with one output. Received: "
                f"`{model.name}` with outputs {list(model.output_names)}. Score one of them: "
                "keras.Model(model.inputs, model.outputs[i]).")
        self.config = config
        self.model = model
        self.seed = int(seed)
        self.data = EvalData(model, train, val, batch_size=config.batch_size, seed=self.seed,
                             calibration_batches=config.calibration_batches)
        self.loss = loss if loss is not None else (compiled_loss or default_loss(model, self.data.y_example))
        # Fingerprints for the search checkpoint: a resume with another model, weights or data is refused.
        self._fingerprints = model_fingerprints(model)
        self._qat = qat.QATScorer(model, config, seed=self.seed, loss=self.loss)
        self._shared = SharedModel(model, config, seed=self.seed, loss=self.loss, cache_dir=cache_dir,
                                   signature=self.signature)
        self.num_evaluations = 0

    # -- the configuration, read through ---------------------------------------------------------
    def __getattr__(self, name):
        """The configuration's options as attributes (``evaluator.epochs``, ``evaluator.learning_rate``, ...)."""
        config = self.__dict__.get("config")
        if config is not None and name in EvaluatorConfig.__dataclass_fields__:
            value = getattr(config, name)
            return config.shared_learning_rate if name == "oneshot_learning_rate" else value
        raise AttributeError(f"'{type(self).__name__}' object has no attribute {name!r}")

    @property
    def cache_dir(self) -> str | None:
        """oneshot: where the shared weights are saved and loaded (``tfmpq.search`` sets the run directory)."""
        return self._shared.cache_dir

    @cache_dir.setter
    def cache_dir(self, value) -> None:
        self._shared.cache_dir = None if value is None else str(value)

    @property
    def oneshot_info(self) -> dict | None:
        """oneshot: how the shared weights came to be (``"trained"``, ``"loaded"`` from ``cache_dir``,
        ``"shipped"`` to a worker), the one-time training cost and its losses; None until first use."""
        return self._shared.info

    @property
    def num_shared_trainings(self) -> int:
        """Shared one-shot trainings run by this evaluator (0 after a load)."""
        return self._shared.num_trainings

    def oneshot_path(self) -> str | None:
        """Where the shared one-shot weights are saved (:meth:`SharedModel.path`); None without ``cache_dir``."""
        return self._shared.path()

    def signature(self) -> dict:
        """A JSON-able description of what a score means; stored in search checkpoints."""
        return {
            "model": self.model.name,
            "num_params": int(self.model.count_params()),
            "seed": self.seed,
            **self.config.signature(),
            **self._fingerprints,
            "data_sha1": self.data.data_sha1,
            "data_shapes": self.data.data_shapes,
        }

    def spec(self) -> EvaluatorSpec:
        """A picklable recipe that rebuilds this evaluator in another process (see ``tfmpq.search.executors``).

        It holds the float model as ``.keras`` bytes, the training and validation arrays and the
        options, so a worker receives them once and then scores policies exactly as this evaluator does.

        Raises:
            ValueError: ``train`` or ``val`` was a ``tf.data.Dataset`` (only arrays can be shipped), or
                the loss cannot be serialized.
        """
        if self.data.arrays is None:
            raise ValueError(
                "Cannot send this Evaluator to worker processes: `train` and `val` must be (x, y) arrays, not "
                "tf.data.Dataset objects (a dataset pipeline cannot be shipped). Pass arrays, or use executor='serial'."
            )
        loss = serialized_loss(self.loss)
        shared = None
        if self.evaluation == "oneshot":
            # trained (or loaded) here, once, and shipped: workers load these weights, never retrain
            vbm = self._shared_model()
            shared = {"values": [v.numpy() for v in vbm.model.variables], "info": dict(self.oneshot_info)}
        options = dict(self.config.to_json(), seed=self.seed)
        return EvaluatorSpec(model_bytes(self.model), self.data.arrays[0], self.data.arrays[1], loss, options, shared)

    def representative_data(self):
        """The calibration samples (``calibration_batches`` training batches of inputs); also what
        ``Result.export`` hands the TFLite converter."""
        return self.data.calib_x

    # -- scoring -------------------------------------------------------------------------------
    def metrics(self, policy, keep_fed_rows: bool = False) -> dict:
        """``tfmpq.metrics.summary(model, policy)``, computed without building a model (``keep_fed_rows``:
        see there; the separable bound of a search space that prunes channels). Defaults to False."""
        return jsonable(metrics_summary(self.model, policy, per_channel=self.config.per_channel,
                                        keep_fed_rows=keep_fed_rows))

    def build(self, policy, epochs: int | None = None, evaluation: str | None = None, reuse: bool = False,
              recipe: FinetuneRecipe | None = None):
        """Quantizes the float model with ``policy`` and trains (qat) or calibrates (ptq) it.

        Args:
            policy: a ``QuantPolicy`` of the model.
            epochs: QAT epochs; None uses the evaluator's ``epochs``. Ignored for ptq.
            evaluation: ``"qat"`` or ``"ptq"``; None uses the evaluator's. Defaults to None.
            reuse: use the shared variable-bit search model (the returned model is then only valid
                until the next candidate); False builds a standalone QAT model, what export and
                fine-tuning need. A distilled ``recipe`` always builds a standalone model (its loss
                differs from the search model's). Defaults to False.
            recipe: QAT with a :class:`~tfmpq.recipe.FinetuneRecipe` (its learning rate, schedule and
                distillation from the float model); None trains as a search candidate does (constant
                ``learning_rate``). Defaults to None.

        Returns:
            ``(qat_model, accuracy, info)``: the model holding the best epoch's weights, its validation
            accuracy (NaN if training diverged) and ``info`` (``val_accuracy`` per epoch, ``loss``,
            ``step_seconds``: the steady-state time of the training and validation steps).
        """
        mode = evaluation or self.evaluation
        if mode == "oneshot":
            if not reuse:
                raise ValueError(
                    "Invalid value for `reuse`: a one-shot evaluator scores candidates on its shared model only "
                    "(reuse=True). For a standalone QAT model (export), fine-tune: evaluator.finetune(policy, "
                    "epochs), result.finetune(epochs) or `tfmpq export --finetune EPOCHS`."
                )
            return self._shared.score(policy, self.data, batch_size=self.batch_size, from_logits=self._from_logits())
        reuse = reuse and not (mode == "qat" and recipe is not None and recipe.distill)
        model = self._reused_model(policy, compile_model=mode == "qat") if reuse else self._qat.standalone(policy)
        seed_everything(self.seed, tensorflow=not reuse)
        if mode == "ptq":
            return model, ptq.score(model, self.data, batch_size=self.batch_size, from_logits=self._from_logits()), {}
        if not reuse:
            self._qat.compile(model, recipe)
        elif recipe is not None and recipe.learning_rate is not None:
            keras.backend.set_value(model.optimizer.learning_rate, recipe.learning_rate)  # reset() restores it next time
        accuracy, info = self._qat.train(model, self.data, self.epochs if epochs is None else int(epochs), recipe)
        if reuse and recipe is not None:
            keras.backend.set_value(model.optimizer.learning_rate, self.config.learning_rate)
        return model, accuracy, info

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

    def finetune(self, policy, epochs: int | None = None, reuse: bool = False, recipe: FinetuneRecipe | None = None):
        """QAT fine-tuning of one policy for ``epochs`` epochs (Šafář et al.: the front, 50 epochs).

        Args:
            policy: a ``QuantPolicy`` of the model.
            epochs: QAT epochs, >= 1; None takes ``recipe.epochs``. Defaults to None.
            reuse: train the shared variable-bit search model (no build or trace: much faster for short
                fine-tunes; the returned model is only valid until the next candidate). False builds a
                standalone QAT model, what export needs. Defaults to False.
            recipe: a :class:`~tfmpq.recipe.FinetuneRecipe` (learning rate, schedule, distillation from the
                float model); None trains with the evaluator's constant ``learning_rate`` and no teacher.
                Defaults to None.

        Returns:
            ``(candidate, model)``: the score after fine-tuning and the fine-tuned QAT model.
        """
        if epochs is None:
            if recipe is None:
                raise ValueError("Invalid arguments: pass `epochs` or a `recipe`. Received: neither.")
            epochs = recipe.epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Invalid value for `epochs`: expected >= 1. Received: epochs={epochs!r}")
        start = time.perf_counter()
        metrics = self.metrics(policy)
        # fine-tuning always trains (Šafář), whatever the search scored with
        model, acc, info = self.build(policy, epochs=epochs, evaluation="qat", reuse=reuse, recipe=recipe)
        seconds = time.perf_counter() - start
        if not math.isfinite(acc):
            return Candidate(policy, None, metrics, seconds, status="failed",
                             error="fine-tuning diverged", info=info), model
        return Candidate(policy, acc, metrics, seconds, info=info), model

    # -- references and held-out reporting -----------------------------------------------------
    def correct(self, model, data, name: str = "test", batch_size: int = 512):
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
        if self.__dict__.get("_float_accuracy") is None:
            self._float_accuracy = self.data.accuracy(self.model, self._from_logits())
        return self._float_accuracy

    def finetune_float(self, epochs: int | None = None, recipe: FinetuneRecipe | None = None):
        """The fair float reference: the float model trained ``epochs`` more epochs with the QAT recipe
        (same optimizer, learning rate, loss, batch size, data order and best-epoch choice on val).

        A QAT score above the float model's own score after no extra training can be training, not
        quantization; compare QAT fine-tunes with this instead (issue 12, item 3).

        Args:
            epochs: training epochs, >= 1; None takes ``recipe.epochs``. Defaults to None.
            recipe: the :class:`~tfmpq.recipe.FinetuneRecipe` of the QAT fine-tunes it is compared with
                (schedule, learning rate; with ``distill`` the float model learns from its own starting
                point, as the QAT models do). Defaults to None (constant ``learning_rate``).

        Returns:
            ``(val_accuracy, model)``: the best epoch's validation accuracy (NaN if training diverged)
            and a copy of the float model holding that epoch's weights (the evaluator's model is
            never changed).
        """
        if epochs is None and recipe is not None:
            epochs = recipe.epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Invalid value for `epochs`: expected an integer >= 1. Received: epochs={epochs!r}")
        return self._qat.finetune_float(self.model, self.data, epochs, recipe)

    # -- the parts, by their former names (tests and the worker recipe use them) ------------------
    def _from_logits(self) -> bool:
        return bool(getattr(self.loss, "get_config", lambda: {})().get("from_logits"))

    def _reused_model(self, policy, compile_model: bool = False):
        """The shared variable-bit QAT search model set to ``policy`` (:meth:`QATScorer.reused`)."""
        return self._qat.reused(policy, compile_model=compile_model)

    def _shared_model(self):
        """The trained shared one-shot model (:meth:`SharedModel.get`: trained or loaded on first use)."""
        return self._shared.get(self.data)

    def _load_shared(self, values, info: dict) -> None:
        """Loads shared one-shot weights trained elsewhere (:meth:`SharedModel.load`)."""
        self._shared.load(values, info)


@dataclass
class EvaluatorSpec:
    """A picklable recipe of an :class:`~tfmpq.evaluate.Evaluator` (``Evaluator.spec()``); calling it rebuilds one.

    Attributes:
        model_bytes: the float model saved in the ``.keras`` format.
        train, val: the ``(x, y)`` arrays.
        loss: a Keras loss name, or ``{"keras_config": ...}`` from ``keras.losses.serialize``.
        options: the evaluator's configuration (``EvaluatorConfig.to_json()``) and its ``seed``.
        shared: oneshot: the trained shared model's variable values and its ``oneshot_info``, loaded
            by the rebuilt evaluator instead of training again. None otherwise.
    """

    model_bytes: bytes
    train: tuple
    val: tuple
    loss: Any
    options: dict
    shared: dict | None = None

    def __call__(self) -> "Evaluator":
        model = model_from_bytes(self.model_bytes)
        loss = self.loss
        if isinstance(loss, dict):
            loss = keras.losses.deserialize(loss["keras_config"])
        options = dict(self.options)
        seed = options.pop("seed")
        evaluator = Evaluator(model, self.train, self.val, EvaluatorConfig.from_json(options), seed=seed, loss=loss)
        if self.shared is not None:
            evaluator._load_shared(self.shared["values"], dict(self.shared["info"], source="shipped"))
        return evaluator
