"""export_tflite(packed="int4"): native INT4 filters, bit-identical to the int8 container on LiteRT and TFLite Micro.

What each runtime runs was measured on the real interpreters (ai-edge-litert 2.3.0, tflite-micro
0.dev20261023); these tests pin it, so a runtime upgrade that changes it fails here.
"""
import numpy as np
import pytest

from tfmpq.errors import ExportError
from tfmpq.export import count_levels, export_tflite, run_tflite, tflm_arena_bytes, to_int4, weight_storage
from tfmpq.export.flatbuffer import weight_tensors
from tfmpq.export.int4 import _rewrite_int4, pack_int4

BITS = [4, 3, 4, 2]  # conv1 (CONV_2D), dw (DEPTHWISE_CONV_2D), conv2 (CONV_2D), logits (Dense as 1x1 CONV_2D)


@pytest.fixture(scope="module")
def int4_pair(train_qat, digits, tmp_path_factory):
    """(int8-container report, int4 report) of the same calibrated <= 4-bit QAT model."""
    (xt, _), _ = digits
    qat = train_qat(BITS, epochs=0)
    out = tmp_path_factory.mktemp("int4")
    int8 = export_tflite(qat, out / "int8.tflite", representative_data=xt[:200])
    int4 = export_tflite(qat, out / "int4.tflite", representative_data=xt[:200], packed="int4")
    return int8, int4


def test_int4_outputs_are_bit_identical_to_the_int8_container_and_litert_equals_tflm(int4_pair, digits):
    _, (x, _) = digits
    int8, int4 = int4_pair
    assert int4.storage == {"conv1": "int4", "dw": "int4", "conv2": "int4", "logits": "int4"}
    assert int4.packing == "int4" and int4.packed and int4.runtimes == ["litert", "tflm"]
    assert not any(op.startswith("CUSTOM") for op in int4.operators)  # no decode step in the graph
    for kernels in ("reference", "builtin"):
        np.testing.assert_array_equal(
            run_tflite(int4.path, x, "litert", litert_kernels=kernels),
            run_tflite(int8.path, x, "litert", litert_kernels=kernels),
        )
    np.testing.assert_array_equal(run_tflite(int4.path, x, "tflm"), run_tflite(int4.path, x, "litert"))
    # LiteRT's default XNNPACK delegate leaves INT4 convolutions to the builtin kernels
    np.testing.assert_array_equal(run_tflite(int4.path, x, "litert", litert_kernels="default"),
                                  run_tflite(int4.path, x, "litert", litert_kernels="builtin"))
    assert int4.file_bytes < int8.file_bytes


def test_int4_tensors_read_from_the_flatbuffer(int4_pair):
    int8, int4 = int4_pair
    by_name8 = {w.name: w for w in weight_tensors(int8.path)}
    levels = count_levels(int4.path)
    for g in int4.groups:
        w = next(w for w in weight_tensors(int4.path) if w.name == g["tensor"])
        w8 = by_name8[g["tensor"]]
        assert w.type == "INT4" and w8.type == "INT8"
        np.testing.assert_array_equal(w.values, w8.values)  # the same grid indices, two per byte
        np.testing.assert_array_equal(w.scales, w8.scales)
        assert not np.any(w.zero_points)
        q = 2 ** (g["weight_bits"] - 1) - 1
        assert np.abs(w.values).max() <= q  # symmetric narrow range: -q..q
        assert levels[g["tensor"]]["max_levels_per_channel"] <= 2 * q + 1 == 2 ** g["weight_bits"] - 1
        assert g["stored_bytes"] == -(-g["params"] // 2)  # ceil(params / 2) bytes in the file


def test_int4_scratch_is_measured_on_tflite_micro(int4_pair, digits):
    _, (x, _) = digits
    int8, int4 = int4_pair
    # TFLite Micro's reference conv / depthwise kernels unpack an INT4 filter into arena scratch
    assert int8.scratch_bytes == 0 and int4.scratch_bytes == int4.arena_bytes - int8.arena_bytes > 0
    # one unpacked filter at a time (each op's scratch lives only during the op): at most the largest one
    assert int4.scratch_bytes <= max(g["params"] for g in int4.groups)
    assert int4.tflm_arena_bytes == int4.arena_bytes == tflm_arena_bytes(int4.path, x[:1])
    run_tflite(int4.path, x[:3], "tflm", arena_bytes=int4.arena_bytes)  # the reported arena is enough


@pytest.fixture(scope="module")
def fc_pair(train_qat, digits, tmp_path_factory):
    """int8 / int4 reports of the same model with its Dense deployed as FULLY_CONNECTED."""
    (xt, _), _ = digits
    qat = train_qat(BITS, epochs=0)
    out = tmp_path_factory.mktemp("fc")
    int8 = export_tflite(qat, out / "fc8.tflite", representative_data=xt[:200], dense_as_conv=False)
    int4 = export_tflite(qat, out / "fc4.tflite", representative_data=xt[:200], dense_as_conv=False, packed="int4")
    return int8, int4


def test_fully_connected_keeps_int8_filters_with_a_note(fc_pair, digits):
    _, (x, _) = digits
    int8, int4 = fc_pair
    assert "FULLY_CONNECTED" in int4.operators
    assert int4.storage == {"conv1": "int4", "dw": "int4", "conv2": "int4", "logits": "int8"}
    assert any("`logits` (TFLite Micro's FULLY_CONNECTED has no per-channel INT4 kernel" in n for n in int4.notes)
    np.testing.assert_array_equal(run_tflite(int4.path, x, "litert"), run_tflite(int8.path, x, "litert"))
    np.testing.assert_array_equal(run_tflite(int4.path, x, "tflm"), run_tflite(int8.path, x, "tflm"))


def test_tflite_micro_refuses_a_per_channel_int4_fully_connected_filter(fc_pair, digits):
    """The evidence behind keeping FULLY_CONNECTED int8: LiteRT runs the INT4 filter, TFLite Micro refuses it."""
    _, (x, _) = digits
    int8 = fc_pair[0]
    fc = next(w for w in weight_tensors(int8.path) if w.op == "FULLY_CONNECTED")
    assert len(fc.scales) > 1  # per channel
    with pytest.raises(ValueError, match=r"cannot be INT4: TFLite Micro's FULLY_CONNECTED has no per-channel"):
        to_int4(int8.path, [fc.index])
    forced = _rewrite_int4(open(int8.path, "rb").read(), [fc])
    np.testing.assert_array_equal(run_tflite(forced, x, "litert"), run_tflite(int8.path, x, "litert"))
    with pytest.raises(RuntimeError, match=r"TFLM failed to allocate tensors"):
        run_tflite(forced, x[:1], "tflm")
    with pytest.raises(RuntimeError, match=r"input->type == kTfLiteInt8 && filter->type != kTfLiteInt4"):
        tflm_arena_bytes(forced, x[:1])  # its message carries TFLite Micro's log


def test_int4_needs_grid_indices_and_a_sub_5_bit_group(train_qat, plain_int8, digits, tmp_path):
    (xt, _), _ = digits
    float_weights = plain_int8[0]  # the stock converter's int8 weights: up to +-127
    conv = next(w for w in weight_tensors(float_weights) if w.op == "CONV_2D")
    with pytest.raises(ValueError, match=r"cannot be INT4: its int8 values are not 4-bit grid indices"):
        to_int4(float_weights, [conv.index])
    with pytest.raises(ValueError, match=r"tensor 0 is not the filter"):
        to_int4(float_weights, [0])
    with pytest.raises(ExportError, match=r"Invalid value for `packed`: no group was trained at 2\.\.4 bits"):
        export_tflite(train_qat(8, epochs=0), tmp_path / "x.tflite", representative_data=xt[:10], packed="int4")
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("packed", ["int2", "LUT", 1, 4.0])
def test_invalid_packed_values(train_qat, digits, tmp_path, packed):
    (xt, _), _ = digits
    with pytest.raises(ValueError, match=r"Invalid value for `packed`: expected one of \('int8', 'int4', 'lut', "
                                         r"'auto'\) \(or True for 'lut', False/None for 'int8'\)\. Received: packed="):
        export_tflite(train_qat(BITS, epochs=0), tmp_path / "m.tflite", representative_data=xt[:10], packed=packed)
    assert not (tmp_path / "m.tflite").exists()


def test_pack_int4_is_low_nibble_first_and_refuses_wide_values():
    np.testing.assert_array_equal(pack_int4(np.array([1, 2, -8, -1, 7], np.int8)), [0x21, 0xF8, 0x07])
    with pytest.raises(ValueError, match=r"expected integers in -8\.\.7\. Received: values in -9\.\.3"):
        pack_int4(np.array([-9, 3]))


def test_weight_storage_counts_buffers_and_quantization_parameters(int4_pair):
    int8, int4 = int4_pair
    for report in (int8, int4):
        stored = {w.name: w for w in weight_storage(report.path)}
        for g in report.groups:
            w = stored[g["tensor"]]
            channels = {"conv1": 16, "dw": 16, "conv2": 16, "logits": 10}[g["name"]]
            assert w.bias_bytes == 4 * channels
            assert w.qparam_bytes == 2 * channels * (4 + 8)  # filter + bias: float32 scale, int64 zero point
            assert w.total_bytes == g["flash_bytes"]
