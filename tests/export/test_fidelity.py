"""Fidelity: the exported model is the trained model, measured on real data (scikit-learn digits).

For each policy (uniform 8, 6, 4 bits and a mixed policy; per-channel and per-tensor):
- TFLite accuracy (LiteRT and TFLite Micro) is within 1 percentage point of the Keras QAT model's;
- LiteRT (reference kernels) and TFLite Micro give identical int8 outputs;
- every b-bit group holds at most 2^b distinct int8 values per output channel (per-channel) or per
  tensor (per-tensor) in the .tflite.
The default run checks two cases (~40 s); the full matrix is marked slow.
"""
import json

import numpy as np
import pytest

from tfmpq.export import count_levels, evaluate_tflite, export_tflite, run_tflite
from tfmpq.export.flatbuffer import weight_tensors

from export_helpers import keras_accuracy

MIXED = [8, 6, 4, 2]  # conv1, dw, conv2, logits


def _values(path, index):
    return next(w.values for w in weight_tensors(path) if w.index == index)


def check_fidelity(qat, digits, path):
    (xt, _), (x, y) = digits
    report = export_tflite(qat, path, representative_data=xt[:200])
    acc_qat = keras_accuracy(qat, x, y)
    acc_litert = evaluate_tflite(report.path, x, y, runtime="litert")
    acc_tflm = evaluate_tflite(report.path, x, y, runtime="tflm")
    assert acc_qat > 0.8, f"QAT model did not learn: {acc_qat:.3f}"
    assert abs(acc_litert - acc_qat) <= 0.01, (acc_qat, acc_litert)
    assert abs(acc_tflm - acc_qat) <= 0.01, (acc_qat, acc_tflm)
    raw_litert = run_tflite(report.path, x, runtime="litert")
    raw_tflm = run_tflite(report.path, x, runtime="tflm")
    assert raw_litert.dtype == np.int8
    np.testing.assert_array_equal(raw_litert, raw_tflm)
    levels = count_levels(report.path)
    for group in report.groups:
        tensor = levels[group["tensor"]]
        assert tensor["type"] == "INT8"
        if report.per_channel:
            count = tensor["max_levels_per_channel"]
        else:
            count = tensor["levels_per_tensor"]
            if group["weight_bits"] < 8:  # one grid, one scale (kept in the converter's per-channel slots)
                assert tensor["distinct_scales"] == 1, group
        # symmetric narrow range: 2^b - 1 levels (-(2^(b-1) - 1) .. 2^(b-1) - 1)
        assert count <= 2 ** group["weight_bits"] - 1, (group["name"], group["weight_bits"], count)
        if group["weight_bits"] < 8:  # int8 values are the grid indices themselves
            assert group["exact_grid"], group
            assert np.abs(_values(report.path, tensor["index"])).max() <= 2 ** (group["weight_bits"] - 1) - 1
    print(json.dumps({"policy": report.bits, "per_channel": report.per_channel, "acc_qat": acc_qat,
                      "acc_litert": acc_litert, "acc_tflm": acc_tflm, "file_bytes": report.file_bytes,
                      "int8_weight_bytes": report.int8_weight_bytes,
                      "packed_weight_bytes": report.packed_weight_bytes, "arena": report.tflm_arena_bytes,
                      "levels": {g["name"]: g["max_levels_per_channel"] if report.per_channel
                                 else g["levels_per_tensor"] for g in report.groups}}))
    return report, acc_qat, acc_litert, acc_tflm


@pytest.mark.parametrize("bits, per_channel", [(MIXED, True), (4, False)], ids=["mixed-per-channel", "4-per-tensor"])
def test_fidelity(bits, per_channel, train_qat, digits, tmp_path):
    check_fidelity(train_qat(bits, per_channel=per_channel), digits, tmp_path / "m.tflite")


@pytest.mark.slow
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
@pytest.mark.parametrize("bits", [8, 6, 4, MIXED], ids=["8", "6", "4", "mixed"])
def test_fidelity_matrix(bits, per_channel, train_qat, digits, tmp_path):
    qat = train_qat(bits, per_channel=per_channel)
    report, *_ = check_fidelity(qat, digits, tmp_path / "m.tflite")
    if bits == 4:  # a 4-bit grid has at most 15 values (symmetric, narrow range)
        key = "max_levels_per_channel" if per_channel else "levels_per_tensor"
        assert max(g[key] for g in report.groups) <= 15
    if bits != 8:  # truly packed N-bit weights: bit-exact with the int8 container on TFLite Micro
        (xt, _), (x, _) = digits
        packed = export_tflite(qat, tmp_path / "p.tflite", representative_data=xt[:200], packed=True)
        np.testing.assert_array_equal(run_tflite(packed.path, x, "tflm"), run_tflite(report.path, x, "tflm"))
        assert packed.packed and packed.lut_weight_bytes < report.int8_weight_bytes
        print(json.dumps({"policy": report.bits, "per_channel": per_channel, "packed_file_bytes": packed.file_bytes,
                          "lut_weight_bytes": packed.lut_weight_bytes, "packed_arena": packed.tflm_arena_bytes,
                          "lut_bytes": {g["name"]: g["lut_bytes"] for g in packed.groups}}))
