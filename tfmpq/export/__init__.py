"""Export tfmpq QAT models to TFLite / TFLite Micro, and run them on the real interpreters.

- ``export_tflite``: full-integer .tflite that keeps every group on its trained bit-width grid, its
  sub-8-bit kernels in int8 containers or packed (``packed="int4" | "lut" | "auto"``).
- ``export_models``: several QAT models -> files, their test accuracies and ``export.json`` (the one
  path of ``Result.export`` and ``tfmpq export``).
- ``evaluate_tflite`` / ``run_tflite``: accuracy / raw outputs on LiteRT or TFLite Micro.
- ``count_levels``: distinct deployed weight values per channel / tensor (is the grid kept?).
- ``weight_storage``: how a file stores each operator's weights, byte by byte (int8, INT4, LUT).
- ``write_c_array``: the model as a ``.h`` / ``.cc`` pair for a TFLite Micro project.
- ``to_int4``: native INT4 filters (two values per byte; LiteRT and TFLite Micro).
- ``lut_compress``: TFLite Micro LUT compression (N-bit indices + value tables, DECODE operators).
"""
from tfmpq.export.c_array import parse_c_array, write_c_array
from tfmpq.export.flatbuffer import StoredWeight, weight_storage
from tfmpq.export.int4 import to_int4
from tfmpq.export.levels import count_levels
from tfmpq.export.models import export_models
from tfmpq.export.packed import PackedTensor, lut_compress
from tfmpq.export.runtimes import evaluate_tflite, run_tflite, tflm_arena_bytes
from tfmpq.export.tflite import ExportReport, export_tflite

__all__ = [
    "ExportReport", "PackedTensor", "StoredWeight", "count_levels", "evaluate_tflite", "export_models", "export_tflite",
    "lut_compress", "parse_c_array", "run_tflite", "tflm_arena_bytes", "to_int4", "weight_storage",
    "write_c_array",
]
