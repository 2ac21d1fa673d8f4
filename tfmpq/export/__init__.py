"""Export tfmpq QAT models to TFLite / TFLite Micro, and run them on the real interpreters.

- ``export_tflite``: full-integer .tflite that keeps every group on its trained bit-width grid.
- ``evaluate_tflite`` / ``run_tflite``: accuracy / raw outputs on LiteRT or TFLite Micro.
- ``count_levels``: distinct deployed weight values per channel / tensor (is the grid kept?).
- ``write_c_array``: the model as a ``.h`` / ``.cc`` pair for a TFLite Micro project.
- ``lut_compress``: TFLite Micro LUT compression (truly packed N-bit weights).
"""
from tfmpq.export.c_array import parse_c_array, write_c_array
from tfmpq.export.levels import count_levels
from tfmpq.export.packed import PackedTensor, lut_compress
from tfmpq.export.runtimes import evaluate_tflite, run_tflite, tflm_arena_bytes
from tfmpq.export.tflite import ExportReport, export_tflite

__all__ = [
    "ExportReport", "PackedTensor", "count_levels", "evaluate_tflite", "export_tflite", "lut_compress",
    "parse_c_array", "run_tflite", "tflm_arena_bytes", "write_c_array",
]
