"""tfmpq: find, train and deploy mixed-precision (per-layer N-bit) quantized Keras models.

Pipeline (imports flow one way): graph -> policy -> metrics -> quantize -> evaluate -> hessian -> search -> export.
"""
from tfmpq import _keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfmpq import metrics
from tfmpq.errors import CheckpointError, ExportError, PolicyError, TfmpqError, UnsupportedModelError
from tfmpq.graph import QuantGroup, float_layers, quantizable_groups
from tfmpq.policy import QuantPolicy
from tfmpq.quantize import calibrate, freeze_bn, group_layers, policy_of, quantize_model, quantize_scope
from tfmpq.hessian import omega_table, sensitivity
from tfmpq.export import count_levels, evaluate_tflite, export_tflite, run_tflite, write_c_array

__version__ = "0.1.0"

_SUBMODULES = ("data", "export", "search", "zoo", "report", "evaluate")


def __getattr__(name):
    """`tfmpq.search`, `tfmpq.data`, ... without importing them all with `import tfmpq`."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"tfmpq.{name}")
    raise AttributeError(f"module 'tfmpq' has no attribute {name!r}")

__all__ = [
    "CheckpointError", "ExportError", "PolicyError", "QuantGroup", "QuantPolicy", "TfmpqError",
    "UnsupportedModelError", "calibrate", "float_layers", "freeze_bn", "group_layers", "metrics", "policy_of",
    "quantizable_groups", "quantize_model", "quantize_scope", "count_levels", "evaluate_tflite", "export_tflite",
    "run_tflite", "write_c_array", "sensitivity", "omega_table",
]
