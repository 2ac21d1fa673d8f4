"""QAT scoring (Šafář et al., sec. 2.2): quantize from the float weights, train, score the best epoch.

:class:`QATScorer` holds the recipe (the evaluator's configuration, seed and loss): a candidate is
trained either on a QAT model built for it (:meth:`QATScorer.standalone`, what export and fine-tuning
need) or on the one variable-bit search model, built, compiled and traced once (:meth:`QATScorer.reused`:
each candidate assigns its bits and restores the initial weights and a fresh optimizer state);
:meth:`QATScorer.train` is the training itself and :meth:`QATScorer.finetune_float` trains the float
model with the same recipe, the fair reference of a QAT number. A training option of the configuration
is used here only.
"""
from __future__ import annotations

import math
import time

import numpy as np

from tfmpq._keras import keras
from tfmpq.evaluate.config import EvaluatorConfig
from tfmpq.evaluate.data import EvalData, seed_everything
from tfmpq.quantize import VariableBitModel, quantize_model
from tfmpq.recipe import FinetuneRecipe
from tfmpq.training import CosineDecay, DistillationLoss, packed_accuracy

OPTIMIZER_CLASSES = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}


def make_optimizer(config: EvaluatorConfig, learning_rate: float | None = None):
    """A fresh Keras optimizer of ``config.optimizer`` (at ``learning_rate``, else the config's)."""
    cls = getattr(keras.optimizers, OPTIMIZER_CLASSES[config.optimizer])
    return cls(learning_rate=config.learning_rate if learning_rate is None else learning_rate)


class QATScorer:
    """QAT scoring of one evaluator: its models (one built per candidate, or the shared variable-bit search
    model) and their training."""

    def __init__(self, model, config: EvaluatorConfig, *, seed: int, loss):
        self.model = model
        self.config = config
        self.seed = seed
        self.loss = loss
        self.search_model = None  # the VariableBitModel, built on first use

    def standalone(self, policy):
        """A QAT model of ``policy`` built from the float model (a fresh graph: memory stays flat)."""
        c = self.config
        keras.backend.clear_session()  # keeps memory flat across hundreds of candidates
        keras.utils.set_random_seed(self.seed)
        return quantize_model(self.model, policy, per_channel=c.per_channel, symmetric=c.symmetric,
                              bn_freeze_step=c.bn_freeze_step, bn_fold=c.bn_fold)

    def reused(self, policy, compile_model: bool = False):
        """The shared variable-bit model, set to ``policy`` and reset to the initial state (compiled,
        once, for QAT evaluators or when ``compile_model``: e.g. fine-tuning after a ptq search)."""
        c = self.config
        if self.search_model is None:
            keras.utils.set_random_seed(self.seed)
            self.search_model = VariableBitModel(
                self.model, per_channel=c.per_channel, symmetric=c.symmetric, bn_freeze_step=c.bn_freeze_step,
                bn_fold=c.bn_fold,
            )
        if (c.evaluation == "qat" or compile_model) and getattr(self.search_model.model, "optimizer", None) is None:
            self.compile(self.search_model.model)
        self.search_model.set_policy(policy)
        self.search_model.reset()
        return self.search_model.model

    def compile(self, model, recipe: FinetuneRecipe | None = None) -> None:
        """Compiles ``model`` with a fresh optimizer (at ``recipe``'s learning rate, else the config's) and the loss
        (``recipe.distill``: :class:`~tfmpq.training.DistillationLoss` on packed targets)."""
        if recipe is not None and recipe.distill:
            classes = int(self.model.output_shape[-1] or 0)
            if classes < 2:
                raise ValueError(f"Invalid value for `recipe`: distillation needs a multi-class output. Received: a "
                                 f"model with output shape {self.model.output_shape}; use FinetuneRecipe(distill=False).")
            loss = DistillationLoss(classes, recipe.distill_weight, recipe.temperature, self.from_logits())
            model.compile(optimizer=make_optimizer(self.config, self.rate(recipe)), loss=loss,
                          metrics=[packed_accuracy(classes)])
            return
        model.compile(optimizer=make_optimizer(self.config, self.rate(recipe)), loss=self.loss, metrics=["accuracy"])

    def rate(self, recipe: FinetuneRecipe | None) -> float:
        """The (peak) learning rate of a fine-tune: the recipe's, else the config's."""
        return self.config.learning_rate if recipe is None or recipe.learning_rate is None else recipe.learning_rate

    def from_logits(self) -> bool:
        return bool(getattr(self.loss, "get_config", lambda: {})().get("from_logits"))

    def recipe_fit(self, data: EvalData, epochs: int, recipe: FinetuneRecipe | None) -> tuple:
        """``(training data, callbacks)`` of ``recipe``: the packed distillation targets (the float model as
        teacher) and the cosine schedule over ``epochs`` (a callback: it acts on the traced search model too)."""
        train = data.distill_data(self.model, self.from_logits()) if recipe is not None and recipe.distill \
            else data.train_data()
        if recipe is None or recipe.schedule != "cosine":
            return train, []
        if data.num_train is None:
            raise ValueError("Invalid value for `recipe`: a cosine schedule needs `train` as (x, y) arrays (its length "
                             "sets the steps). Received: a tf.data.Dataset.")
        return train, [CosineDecay(self.rate(recipe), epochs * math.ceil(data.num_train / self.config.batch_size))]

    def train(self, qat, data: EvalData, epochs: int, recipe: FinetuneRecipe | None = None) -> tuple[float, dict]:
        """Trains a compiled QAT model ``epochs`` epochs (with ``recipe``'s data and schedule) and keeps its best
        epoch.

        Returns:
            ``(accuracy, info)``: the best epoch's validation accuracy (NaN if training diverged; Šafář,
            sec. 2.2: "validation accuracy after each [epoch], best taken") and ``info`` (``val_accuracy``
            per epoch, ``loss``, ``step_seconds``: the steady-state time of the training and validation steps).
        """
        best = _best_weights_callback()
        timer = _step_timer()
        train, schedule = self.recipe_fit(data, epochs, recipe)
        hist = qat.fit(
            train,
            epochs=epochs,
            validation_data=data.val,
            verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN(), best, timer, *schedule],
        )
        val_acc = [float(v) for v in hist.history.get("val_accuracy", [])]
        losses = [float(v) for v in hist.history.get("loss", [])]
        info = {"val_accuracy": val_acc, "loss": losses, "step_seconds": timer.steady_seconds()}
        if not val_acc or not all(math.isfinite(v) for v in losses + val_acc):
            return float("nan"), info
        best.restore(qat)
        return max(val_acc), info

    def finetune_float(self, model, data: EvalData, epochs: int, recipe: FinetuneRecipe | None = None):
        """The float model trained ``epochs`` more epochs with the QAT recipe (see ``Evaluator.finetune_float``).

        Returns:
            ``(val_accuracy, model)``: the best epoch's validation accuracy (NaN if training diverged) and a
            copy of the float model holding that epoch's weights (``model`` is never changed).
        """
        seed_everything(self.seed)
        tuned = keras.models.clone_model(model)
        tuned.set_weights(model.get_weights())
        self.compile(tuned, recipe)
        best = _best_weights_callback()
        train, schedule = self.recipe_fit(data, epochs, recipe)
        hist = tuned.fit(train, epochs=epochs, validation_data=data.val, verbose=0,
                         callbacks=[keras.callbacks.TerminateOnNaN(), best, *schedule])
        val_acc = [float(v) for v in hist.history.get("val_accuracy", [])]
        if not val_acc or not all(math.isfinite(v) for v in val_acc + hist.history.get("loss", [])):
            return float("nan"), tuned
        best.restore(tuned)
        return max(val_acc), tuned


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
