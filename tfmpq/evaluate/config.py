"""How a policy is scored: every option of the :class:`~tfmpq.evaluate.Evaluator`, declared and checked once.

An :class:`EvaluatorConfig` is what a score means, apart from the model, the data and the seed: it is
checked here (``__post_init__``), round-trips through JSON, and is the source of the evaluator's part
of a run's signature (``run.json``). Every search entry point takes its fields as keyword arguments
(``tfmpq.search.problem.build_problem`` sorts them out) and ``tfmpq search`` generates its flags from
their metadata, so an option added here reaches both. Pure Python: no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

from tfmpq.options import Flag, known_fields, option
from tfmpq.policy import FLOAT_BITS, QUANT_BITS

EVALUATIONS = ("qat", "ptq", "oneshot")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
#: The QAT forwards of folded BatchNormalization: ``tfmpq.quantize.layers.BN_FOLDS`` (that module loads
#: TensorFlow; a test keeps the two equal).
BN_FOLDS = ("one_conv", "two_conv")


@dataclasses.dataclass(frozen=True)
class EvaluatorConfig:
    """How an :class:`~tfmpq.evaluate.Evaluator` scores a policy (everything but the model, data and seed).

    Args:
        evaluation: ``"qat"`` (train ``epochs`` epochs of QAT, score = best epoch's validation
            accuracy, Šafář), ``"ptq"`` (calibrate, no training, Santini) or ``"oneshot"`` (score
            on a shared variable-bit model trained once, after re-calibrating its BN statistics and
            activation ranges for the policy). Defaults to "qat".
        epochs: QAT epochs per candidate; for ``"oneshot"``, the epochs of the one-time shared
            training. Defaults to 1.
        batch_size: batch size for arrays. Defaults to 64.
        per_channel: per-channel symmetric weights (else per-tensor). Defaults to True.
        symmetric: symmetric weight quantization. Defaults to True.
        optimizer: ``"adam"``, ``"sgd"`` or ``"rmsprop"``. Defaults to "adam".
        learning_rate: QAT learning rate (of every candidate, fine-tune and re-score). Defaults to 1e-4.
        calibration_batches: training batches used to calibrate activation ranges (ptq) or to
            re-calibrate a one-shot candidate. Defaults to 4.
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
            search will ask for; a search sets them from its space). Defaults to ``(2, ..., 8)``.
        oneshot_activation_bits: oneshot: the activation bit-widths sampled per group. Defaults to
            ``(8,)``.
        oneshot_learning_rate: oneshot: the learning rate of the one-time shared training (its
            optimizer is ``optimizer``); None uses ``learning_rate``. The fine-tunes and QAT re-scores
            of a one-shot search use ``learning_rate``, as a QAT search's candidates do. Starting from
            trained float weights, a rate as low as QAT's ranks best: on the demo CNN 1e-4 agreed with
            stand-alone QAT at Kendall tau 0.62 (mean of 3 seeds), 3e-4 at 0.47 (2 seeds), 1e-3 at
            0.48 (README, ``bench.oneshot``). Defaults to None.

    Raises:
        ValueError: an unknown ``evaluation``, ``optimizer`` or ``bn_fold``; ``epochs < 1`` for qat or
            oneshot; a non-positive or non-finite learning rate; bad one-shot bit-widths; a
            ``calibration_batches`` below 1. The message names the option.

    Example:
    >>> config = EvaluatorConfig(evaluation="ptq", calibration_batches=2)
    >>> EvaluatorConfig.from_json(config.to_json()) == config
    True
    """

    evaluation: str = option("qat", Flag(
        "qat: train --epochs of QAT, score the best epoch; ptq: calibrate only; oneshot: train one shared "
        "variable-bit model for --epochs once (saved in RUN_DIR), then score each candidate on it after "
        "re-calibration", choices=EVALUATIONS, per_strategy=False))
    epochs: int = option(1, Flag("QAT epochs per candidate (oneshot: of the shared training)", type="positive_int"))
    batch_size: int = option(64, Flag("", type="positive_int"))
    per_channel: bool = option(True, Flag("one weight scale per tensor (default: per channel)", flag="--per-tensor",
                                          kind="switch", invert=True, default_text=""))
    symmetric: bool = option(True)
    optimizer: str = option("adam")
    learning_rate: float = option(1e-4, Flag("QAT learning rate (of the candidates, re-scores and fine-tunes)",
                                             type="float"))
    calibration_batches: int = option(4, Flag(
        "training batches that set activation ranges (ptq) or re-calibrate a candidate (oneshot: 2 ranked as well "
        "as 4 on the demo CNN, at 0.7x the cost)", type="positive_int"))
    bn_freeze_step: int | None = option(None)
    bn_fold: str = option("one_conv")
    reuse_model: bool = option(True)
    distill: bool = option(False, Flag("oneshot: in-place distillation from the highest-bit policy in the shared "
                                       "training", kind="switch", default_text=""))
    num_random_policies: int = option(2)
    oneshot_bits: tuple = option(QUANT_BITS)
    oneshot_activation_bits: tuple = option((8,))
    oneshot_learning_rate: float | None = option(None, Flag(
        "oneshot: learning rate of the shared training (--learning-rate stays the QAT one of the re-scores and "
        "fine-tunes)", type="float", default_text="--learning-rate"))

    def __post_init__(self):
        _check(self)
        put = object.__setattr__
        for name, cast in (("epochs", int), ("batch_size", int), ("per_channel", bool), ("symmetric", bool),
                           ("learning_rate", float), ("calibration_batches", int), ("reuse_model", bool),
                           ("distill", bool), ("num_random_policies", int)):
            put(self, name, cast(getattr(self, name)))
        put(self, "oneshot_bits", tuple(sorted(int(b) for b in set(self.oneshot_bits))))
        put(self, "oneshot_activation_bits", tuple(sorted(int(b) for b in set(self.oneshot_activation_bits))))
        if self.oneshot_learning_rate is not None:
            put(self, "oneshot_learning_rate", float(self.oneshot_learning_rate))

    @property
    def shared_learning_rate(self) -> float:
        """The learning rate of the one-shot shared training: ``oneshot_learning_rate``, else ``learning_rate``."""
        return self.learning_rate if self.oneshot_learning_rate is None else self.oneshot_learning_rate

    # -- JSON ----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Every option, JSON-able (:meth:`from_json` is the inverse)."""
        out = dataclasses.asdict(self)
        out["oneshot_bits"], out["oneshot_activation_bits"] = list(self.oneshot_bits), list(self.oneshot_activation_bits)
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> "EvaluatorConfig":
        """The configuration :meth:`to_json` wrote.

        Raises:
            ValueError: a key that is not an option (the message lists them), or an invalid value.
        """
        return cls(**known_fields(cls, data))

    def replace(self, **changes) -> "EvaluatorConfig":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    # -- what a score means ----------------------------------------------------------------------
    def oneshot_options(self) -> dict:
        """What the one-shot shared training depends on (its part of the signature and of its file's key)."""
        return {"epochs": self.epochs, "distill": self.distill, "num_random_policies": self.num_random_policies,
                "bits": list(self.oneshot_bits), "activation_bits": list(self.oneshot_activation_bits),
                "optimizer": self.optimizer, "learning_rate": self.shared_learning_rate, "bn_fold": self.bn_fold}

    def signature(self) -> dict:
        """The options a search checkpoint records (``Evaluator.signature`` adds the model, data and seed).

        Options that cannot change a score here are left out (ptq trains nothing: no epochs, optimizer,
        learning rate or BN fold; a one-shot search scores on the shared model: its training options
        only). An option added after the run-directory format was fixed enters where it differs from its
        default, so run directories written before it existed still resume.
        """
        qat = self.evaluation == "qat"
        sig = {
            "evaluation": self.evaluation,
            "epochs": self.epochs if qat else 0,
            "batch_size": self.batch_size,
            "per_channel": self.per_channel,
            "symmetric": self.symmetric,
            "optimizer": self.optimizer if qat else None,
            "learning_rate": self.learning_rate if qat else None,
            "calibration_batches": self.calibration_batches,
            **({"oneshot": self.oneshot_options()} if self.evaluation == "oneshot" else {}),
        }
        if self.evaluation in ("qat", "oneshot"):
            sig["bn_fold"] = self.bn_fold
        sig.update({f.name: self.to_json()[f.name] for f in dataclasses.fields(self)
                    if f.name not in SIGNED and getattr(self, f.name) != f.default})
        return sig


#: The options :meth:`EvaluatorConfig.signature` places explicitly (or leaves out on purpose:
#: ``reuse_model`` gives the same scores, ``bn_freeze_step`` was never recorded); any other enters the
#: signature where it differs from its default. A literal, the options of the run-directory format: an
#: option added to the configuration stays out of it.
SIGNED = ("evaluation", "epochs", "batch_size", "per_channel", "symmetric", "optimizer", "learning_rate",
          "calibration_batches", "bn_freeze_step", "bn_fold", "reuse_model", "distill", "num_random_policies",
          "oneshot_bits", "oneshot_activation_bits", "oneshot_learning_rate")


def _check(c: EvaluatorConfig) -> None:
    """Every option's check, in one place (see :class:`EvaluatorConfig`'s Raises)."""
    if c.evaluation not in EVALUATIONS:
        raise ValueError(
            f"Invalid value for `evaluation`: expected one of {EVALUATIONS}. Received: evaluation={c.evaluation!r}")
    epochs_ok = isinstance(c.epochs, int) and c.epochs >= 1
    if c.evaluation == "qat" and not epochs_ok:
        raise ValueError(f"Invalid value for `epochs`: expected an integer >= 1 for QAT. Received: epochs={c.epochs!r}")
    if c.evaluation == "oneshot" and not epochs_ok:
        raise ValueError(f"Invalid value for `epochs`: expected an integer >= 1 (epochs of the shared one-shot "
                         f"training). Received: epochs={c.epochs!r}")
    if not isinstance(c.num_random_policies, int) or c.num_random_policies < 0:
        raise ValueError(
            f"Invalid value for `num_random_policies`: expected an integer >= 0. Received: {c.num_random_policies!r}")
    for arg, values in (("oneshot_bits", c.oneshot_bits), ("oneshot_activation_bits", c.oneshot_activation_bits)):
        if (not values or not all(_is_int(b) for b in values) or any(b not in QUANT_BITS + FLOAT_BITS for b in values)):
            raise ValueError(f"Invalid value for `{arg}`: expected a non-empty sequence of bit-widths in 2..8 or "
                             f"16/32. Received: {arg}={values!r}")
    if c.optimizer not in OPTIMIZERS:
        raise ValueError(
            f"Invalid value for `optimizer`: expected 'adam', 'sgd' or 'rmsprop'. Received: optimizer={c.optimizer!r}")
    if c.bn_fold not in BN_FOLDS:
        raise ValueError(f"Invalid value for `bn_fold`: expected one of {BN_FOLDS}. Received: bn_fold={c.bn_fold!r}")
    if c.calibration_batches < 1:
        raise ValueError(f"Invalid value for `calibration_batches`: expected >= 1. Received: {c.calibration_batches!r}")
    for arg, rate in (("learning_rate", c.learning_rate), ("oneshot_learning_rate", c.oneshot_learning_rate)):
        if rate is None and arg == "oneshot_learning_rate":
            continue  # None: learning_rate's
        if isinstance(rate, bool) or not _is_number(rate) or not 0 < rate < math.inf:
            raise ValueError(f"Invalid value for `{arg}`: expected a positive finite number. Received: {arg}={rate!r}")


def _is_int(value) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return not isinstance(value, bool) and hasattr(value, "__index__")


def _is_number(value) -> bool:
    """A real number (Python or NumPy)."""
    try:
        return not isinstance(value, (str, bytes)) and float(value) == value
    except (TypeError, ValueError):
        return False
