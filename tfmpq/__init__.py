"""tfmpq: find, train and deploy mixed-precision (per-layer N-bit) quantized Keras models.

Pipeline (imports flow one way): convert -> graph -> policy -> metrics -> quantize -> evaluate -> hessian -> search
-> export -> report. Everything here loads lazily: ``import tfmpq`` imports no TensorFlow, and neither do
``tfmpq.graph``, ``tfmpq.policy``, ``tfmpq.metrics``, ``tfmpq.options``, ``tfmpq.evaluate`` (until its
``Evaluator`` is used: ``EvaluatorConfig`` needs none), ``tfmpq.search`` (until it builds an Evaluator) and
``tfmpq.report``; ``tfmpq.quantize`` and ``tfmpq.export`` do. Every function that takes a float
model also takes a Keras 3 model (``tfmpq.as_tf_keras``).
"""
import importlib
import os

# tfmot 0.8.1 needs Keras 2 (tf_keras): this must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfmpq.errors import (  # noqa: E402
    CheckpointError, ExportError, FloatLayerError, PolicyError, TfmpqError, UnsupportedModelError,
)

__version__ = "0.1.0"

#: Public names -> the module that defines them (imported on first use).
_EXPORTS = {
    "as_tf_keras": "tfmpq.convert", "flatten_model": "tfmpq.convert",
    "QuantGroup": "tfmpq.graph", "float_layers": "tfmpq.graph", "quantizable_groups": "tfmpq.graph",
    "float_weight_share": "tfmpq.graph",
    "QuantPolicy": "tfmpq.policy",
    "calibrate": "tfmpq.quantize", "freeze_bn": "tfmpq.quantize", "group_layers": "tfmpq.quantize",
    "policy_of": "tfmpq.quantize", "quantize_model": "tfmpq.quantize", "quantize_scope": "tfmpq.quantize",
    "count_levels": "tfmpq.export", "evaluate_tflite": "tfmpq.export", "export_tflite": "tfmpq.export",
    "run_tflite": "tfmpq.export", "write_c_array": "tfmpq.export",
    "sensitivity": "tfmpq.hessian", "omega_table": "tfmpq.hessian",
}
_SUBMODULES = ("candidate", "checks", "convert", "data", "evaluate", "export", "graph", "hessian", "metrics", "options",
               "policy", "quantize", "report", "search", "stats", "zoo", "cli")


def __getattr__(name):
    """``tfmpq.QuantPolicy``, ``tfmpq.search``, ... imported when first used."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"tfmpq.{name}")
    raise AttributeError(f"module 'tfmpq' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))


__all__ = [
    "as_tf_keras", "CheckpointError", "ExportError", "FloatLayerError", "PolicyError", "QuantGroup", "QuantPolicy",
    "TfmpqError",
    "UnsupportedModelError", "as_tf_keras", "calibrate", "flatten_model", "float_layers",
    "float_weight_share", "freeze_bn", "group_layers", "metrics", "policy_of",
    "quantizable_groups", "quantize_model", "quantize_scope", "count_levels", "evaluate_tflite", "export_tflite",
    "run_tflite", "write_c_array", "sensitivity", "omega_table",
]
