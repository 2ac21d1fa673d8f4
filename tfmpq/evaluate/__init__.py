"""Scoring one quantization policy: a policy in, a :class:`Candidate` out.

The :class:`Evaluator` knows no search strategy; every strategy (and every user scoring their own
policies) goes through it. Three evaluation modes:

* ``evaluation="qat"`` (Šafář et al., sec. 2.2): quantize from the float weights, train ``epochs``
  epochs of quantization-aware training, score = the best epoch's validation accuracy.
* ``evaluation="ptq"`` (Santini, sec. II.A and III): calibrate the quantized model's activation
  ranges on a few training batches, no training, score = validation accuracy.
* ``evaluation="oneshot"`` (Shen et al., AAAI 2021; Bulat & Tzimiropoulos, ICCV 2021): train one
  shared variable-bit model for ``epochs`` epochs under sampled policies once (the sandwich rule,
  ``tfmpq.quantize.oneshot``); a candidate then costs setting its bits, re-estimating BN statistics
  and activation ranges on a few training batches, and one validation pass.

One module per seam, behind the one :class:`Evaluator` API:

* ``config.py``: :class:`EvaluatorConfig`, every option, checked once (no TensorFlow);
* ``evaluator.py``: :class:`Evaluator`, and :class:`EvaluatorSpec` (it rebuilt in a worker);
* ``data.py``: the pipelines, calibration samples and fingerprints, prepared once;
* ``qat.py``, ``ptq.py``: QAT and PTQ scoring; ``oneshot.py``: the one-shot shared model;
* ``workers.py``: what a worker needs (the model and loss in picklable form) and :func:`configure_tensorflow`.

This package is the search's TensorFlow side, loaded when first used: ``EvaluatorConfig`` and
:class:`~tfmpq.candidate.Candidate` (what the journal reloads) need no TensorFlow, so ``tfmpq.search``
builds its configuration, reads and ranks runs without it.
"""
import importlib

from tfmpq.candidate import Candidate
from tfmpq.evaluate.config import EVALUATIONS, EvaluatorConfig

__all__ = ["Evaluator", "EvaluatorConfig", "EvaluatorSpec", "Candidate", "configure_tensorflow", "EVALUATIONS"]

#: Names that load TensorFlow -> their module (imported on first use).
_LAZY = {"Evaluator": "tfmpq.evaluate.evaluator", "EvaluatorSpec": "tfmpq.evaluate.evaluator",
         "configure_tensorflow": "tfmpq.evaluate.workers", "ends_in_probabilities": "tfmpq.evaluate.data"}


def __getattr__(name):
    """``Evaluator``, ``EvaluatorSpec``, ``configure_tensorflow``: TensorFlow is imported with them."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfmpq.evaluate' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
