"""lut_compress: TFLite Micro LUT compression gives truly packed N-bit weights, bit-exact on TFLite Micro."""
import numpy as np
import pytest

from tfmpq.errors import ExportError
from tfmpq.export import count_levels, lut_compress, run_tflite
from tfmpq.export.runtimes import litert_interpreter


def _bits(model, bits):
    return {v["index"]: bits for v in count_levels(model).values()}


def test_packed_model_is_bit_exact_on_tflm_and_smaller(plain_int8, digits):
    _, (x, _) = digits
    on_grid = plain_int8[1]
    packed, tensors = lut_compress(on_grid, _bits(on_grid, 4), only_if_smaller=False)
    assert len(tensors) == 4 and all(t.bits == 4 and t.per_channel for t in tensors)
    np.testing.assert_array_equal(run_tflite(packed, x, runtime="tflm"), run_tflite(on_grid, x, runtime="tflm"))
    conv2 = next(t for t in tensors if "conv2" in t.name)
    assert conv2.int8_bytes == 1152
    assert conv2.index_bytes == 1152 // 2  # 4-bit indices
    stride = next(v for k, v in count_levels(on_grid).items() if "conv2" in k)["max_levels_per_channel"]
    # + a 16-byte header + one value table per output channel, each padded to the longest (<= 16 values)
    assert conv2.packed_bytes == conv2.index_bytes + 16 + 16 * stride
    assert conv2.packed_bytes < conv2.int8_bytes


def test_7_bit_tables_for_a_tensor_with_240_values(plain_int8, digits):
    _, (x, _) = digits
    float_weights = plain_int8[0]  # converter-quantized: ~70 values per channel, ~240 per tensor
    conv2 = next(v for k, v in count_levels(float_weights).items() if "conv2" in k)
    assert conv2["levels_per_tensor"] > 128 >= conv2["max_levels_per_channel"]
    packed, tensors = lut_compress(float_weights, {conv2["index"]: 7}, only_if_smaller=False)
    assert len(tensors) == 1 and tensors[0].per_channel and tensors[0].index_bytes == 1152 * 7 // 8
    np.testing.assert_array_equal(run_tflite(packed, x, runtime="tflm"), run_tflite(float_weights, x, runtime="tflm"))


def test_tensors_that_would_grow_stay_int8(plain_int8, digits):
    _, (x, _) = digits
    on_grid = plain_int8[1]
    # 4-bit indices + 16 B header + per-channel tables: only the 1152-weight conv2 gets smaller;
    # conv1 (72 weights: 36 + 16 + 8 x 9 > 72), dw and logits would grow
    packed, tensors = lut_compress(on_grid, _bits(on_grid, 4))
    assert [t.name for t in tensors] == ["plain_cnn/conv2/Conv2D"] and tensors[0].packed_bytes < 1152
    np.testing.assert_array_equal(run_tflite(packed, x, runtime="tflm"), run_tflite(on_grid, x, runtime="tflm"))
    conv1 = next(v for k, v in count_levels(on_grid).items() if "conv1" in k)
    same, none = lut_compress(on_grid, {conv1["index"]: 4})
    assert none == [] and same == on_grid


def test_litert_does_not_run_a_packed_model(plain_int8):
    packed, _ = lut_compress(plain_int8[1], _bits(plain_int8[1], 4))
    # LiteRT reads the packed filter's buffer as the tensor and rejects its per-channel scales
    with pytest.raises((ValueError, RuntimeError), match=r"invalid quantization parameters"):
        litert_interpreter(packed).allocate_tensors()


def test_refuses_weights_off_the_grid(plain_int8):
    with pytest.raises(ExportError, match=r"Cannot pack tensor .*conv2.* at 4 bits: it holds \d+ distinct values"):
        lut_compress(plain_int8[0], _bits(plain_int8[0], 4))


def test_invalid_bits(plain_int8):
    index = next(iter(count_levels(plain_int8[1]).values()))["index"]
    with pytest.raises(ValueError, match=r"expected LUT index bits in 1\.\.7"):
        lut_compress(plain_int8[1], {index: 8})
    with pytest.raises(ValueError, match=r"tensor 0 is not a constant weight tensor"):
        lut_compress(plain_int8[1], {0: 4})
    with pytest.raises(ValueError, match=r"expected at least one"):
        lut_compress(plain_int8[1], {})
