"""export_tflite: what it writes, what it reports, and what it refuses (before writing anything)."""
import json
import os

import numpy as np
import pytest

import tfmpq
from tfmpq.errors import ExportError
from tfmpq.export import ExportReport, evaluate_tflite, export_tflite, parse_c_array, run_tflite
from tfmpq.export.runtimes import litert_interpreter
from tfmpq._keras import keras, tf

from export_helpers import copy_model
from models_for_tests import build_residual_cnn


def test_report_files_and_c_array(train_qat, digits, tmp_path):
    (xt, _), (x, y) = digits
    qat = train_qat([8, 6, 4, 2])
    report = export_tflite(qat, tmp_path / "m.tflite", representative_data=xt[:200], c_array="model_data")
    assert isinstance(report, ExportReport)
    data = (tmp_path / "m.tflite").read_bytes()
    assert report.file_bytes == len(data) and report.path == str(tmp_path / "m.tflite")
    assert parse_c_array((tmp_path / "model_data.cc").read_text()) == data
    assert report.c_array == [str(tmp_path / "model_data.h"), str(tmp_path / "model_data.cc")]
    assert report.bits == {"conv1": 8, "dw": 6, "conv2": 4, "logits": 2}
    params = {"conv1": 144, "dw": 144, "conv2": 2304, "logits": 2560}
    for g in report.groups:
        assert g["params"] == params[g["name"]] and g["int8_bytes"] == params[g["name"]]
        assert g["packed_bytes"] == -(-params[g["name"]] * g["weight_bits"] // 8)
    assert report.int8_weight_bytes == sum(params.values())
    assert report.packed_weight_bytes == 144 + 108 + 1152 + 640
    assert report.tflm_arena_bytes is not None and 1024 < report.tflm_arena_bytes < 32 * 1024
    assert report.operators.count("CONV_2D") == 3 and "FULLY_CONNECTED" not in report.operators  # Dense as 1x1 conv
    assert json.loads(report.to_json())["packed_weight_bytes"] == report.packed_weight_bytes
    assert "conv2" in str(report) and "TFLite Micro arena" in str(report)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tfmpq-")] == []  # no temp file left


def test_float_io(train_qat, digits, tmp_path):
    (xt, _), (x, y) = digits
    qat = train_qat([8, 6, 4, 2])
    report = export_tflite(qat, tmp_path / "f.tflite", representative_data=xt[:100], int8_io=False)
    details = litert_interpreter(report.path)
    assert details.get_input_details()[0]["dtype"] == np.float32
    assert details.get_output_details()[0]["dtype"] == np.float32
    int8 = export_tflite(qat, tmp_path / "i.tflite", representative_data=xt[:100])
    assert evaluate_tflite(report.path, x, y, runtime="tflm") == evaluate_tflite(int8.path, x, y, runtime="tflm")


def test_packed_export_is_bit_exact_with_the_int8_container_on_tflm(train_qat, digits, tmp_path):
    (xt, _), (x, _) = digits
    qat = train_qat([8, 6, 4, 2])
    int8 = export_tflite(qat, tmp_path / "int8.tflite", representative_data=xt[:200])
    packed = export_tflite(qat, tmp_path / "packed.tflite", representative_data=xt[:200], packed=True)
    np.testing.assert_array_equal(run_tflite(packed.path, x, runtime="tflm"), run_tflite(int8.path, x, runtime="tflm"))
    assert packed.packed and packed.operators.count("CUSTOM:TFLM_DECODE") == 2  # the 4 and 2-bit groups
    assert packed.packing == "lut" and packed.storage == {"conv1": "int8", "dw": "int8", "conv2": "lut", "logits": "lut"}
    lut = {g["name"]: g["lut_bytes"] for g in packed.groups}
    assert lut["conv1"] == 144  # 8-bit group stays int8
    assert lut["dw"] == 144  # 6-bit, 144 weights: 108 B of indices + a table would not be smaller
    assert any("['dw'] stay int8" in n for n in packed.notes)
    # b-bit indices + a 16-byte header + one table of <= 2^b - 1 values per output channel
    assert lut["conv2"] <= 2304 * 4 // 8 + 16 + 16 * 15 and lut["logits"] <= 2560 * 2 // 8 + 16 + 10 * 3
    assert packed.lut_weight_bytes == sum(lut.values()) < int8.int8_weight_bytes
    assert any("TFLite Micro only" in n for n in packed.notes)


def test_residual_graph_with_add_softmax_and_dense_bn(digits, tmp_path):
    (xt, _), (x, _) = digits
    model = build_residual_cnn(size=8, stem_padding="same", random_bn=False)
    qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.from_bits(model, weight_bits=[4, 6, 8, 3, 5]))
    tfmpq.calibrate(qat, xt[:256])
    report = export_tflite(qat, tmp_path / "r.tflite", representative_data=xt[:100])
    assert {"ADD", "MAX_POOL_2D", "SOFTMAX"} <= set(report.operators)
    np.testing.assert_array_equal(run_tflite(report.path, x, "litert"), run_tflite(report.path, x, "tflm"))
    for g in report.groups:
        assert g["max_levels_per_channel"] <= 2 ** g["weight_bits"] - 1, g  # symmetric narrow range
    # untrained (calibrated only): compare probabilities, not argmax (near-uniform softmax ties in int8)
    keras_out = qat.predict(x, verbose=0)
    tflite_out = run_tflite(report.path, x, "tflm", dequantize_output=True)
    assert np.abs(keras_out - tflite_out).max() <= 1.5 / 256  # TFLite's softmax output step is 1/256


def test_sub_8_bit_activations_keep_their_grid_in_int8(float_cnn, digits, tmp_path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tfmpq.export.runtimes import _quantize_input

    (xt, _), (x, _) = digits
    base = copy_model(float_cnn)
    qat = tfmpq.quantize_model(base, tfmpq.QuantPolicy.from_bits(base, weight_bits=8, activation_bits=[8, 4, 6, 8]))
    tfmpq.calibrate(qat, xt[:256])
    report = export_tflite(qat, tmp_path / "a.tflite", representative_data=xt[:100])
    assert report.operators.count("MINIMUM") == 2  # the clamps at the 4-bit and 6-bit maxima
    assert any("`dw`: 4-bit activations are kept on their grid" in n for n in report.notes)
    np.testing.assert_array_equal(run_tflite(report.path, x, "litert"), run_tflite(report.path, x, "tflm"))
    interpreter = Interpreter(model_path=report.path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    clamps = {t["index"]: t["name"] for t in interpreter.get_tensor_details() if t["name"].endswith("/Minimum")}
    values = {name: set() for name in clamps.values()}
    for sample in x[:100]:
        interpreter.set_tensor(detail["index"], _quantize_input(sample[None], detail))
        interpreter.invoke()
        for index, name in clamps.items():
            values[name].update(np.unique(interpreter.get_tensor(index)).tolist())
    counts = {name.split("/")[1]: len(v) for name, v in values.items()}
    assert 8 < counts["quant_dw"] <= 16 and 16 < counts["quant_conv2"] <= 64, counts
    # the export report counts the same thing in the file (issue 12, 5c): not a hard-coded 8
    by_name = {g["name"]: g for g in report.groups}
    assert [by_name[n]["deployed_activation_bits"] for n in ("conv1", "dw", "conv2", "logits")] == [8, 4, 6, 8]
    assert 8 < by_name["dw"]["activation_levels"] <= 16 and 16 < by_name["conv2"]["activation_levels"] <= 64
    # weights: the symmetric narrow-range grid has 2^b - 1 levels (issue 12, 5d): 255 at 8 bits
    assert all(g["max_levels_per_channel"] <= 255 for g in report.groups)


def test_not_a_qat_model(float_cnn, digits, tmp_path):
    (xt, _), _ = digits
    with pytest.raises(ExportError, match=r"Invalid value for `qat_model`: expected a QAT model built by "
                                          r"`tfmpq.quantize_model`.*Received: `digits_cnn` \(Functional\)"):
        export_tflite(float_cnn, tmp_path / "m.tflite", representative_data=xt[:10])
    with pytest.raises(ExportError, match=r"Received: `str` \(str\)"):
        export_tflite("model.keras", tmp_path / "m.tflite", representative_data=xt[:10])
    assert not os.listdir(tmp_path)


def test_asymmetric_weights_are_refused_before_converting(train_qat, digits, tmp_path):
    (xt, _), _ = digits
    qat = train_qat(4, symmetric=False, epochs=0)
    with pytest.raises(ExportError, match=r"Cannot export groups \['conv1', 'dw', 'conv2', 'logits'\]: .*asymmetric"
                                          r".*weight zero point 0.*symmetric=True"):
        export_tflite(qat, tmp_path / "m.tflite", representative_data=xt[:10])
    assert not os.listdir(tmp_path)


def test_representative_data_of_the_wrong_shape(train_qat, tmp_path):
    qat = train_qat(8, epochs=0)
    with pytest.raises(ExportError, match=r"Invalid value for `representative_data`: expected samples of shape "
                                          r"\(8, 8, 1\) \(the model's input .*\)\. Received: samples of shape \(28, 28\)"):
        export_tflite(qat, tmp_path / "m.tflite", representative_data=np.zeros((10, 28, 28), np.float32))
    with pytest.raises(ExportError, match=r"expected at least one sample"):
        export_tflite(qat, tmp_path / "m.tflite", representative_data=np.zeros((0, 8, 8, 1), np.float32))
    assert not os.listdir(tmp_path)


def test_bad_output_paths_and_nan_data_fail_before_converting_and_write_nothing(train_qat, digits, tmp_path,
                                                                                 monkeypatch):
    (xt, _), _ = digits
    qat = train_qat(8, epochs=0)
    with pytest.raises(ExportError, match=r"Invalid value for `path`: its folder `.*missing` does not exist .*"
                                          r"Create it first\. Nothing was written"):
        export_tflite(qat, tmp_path / "missing" / "m.tflite", representative_data=xt[:10])
    with pytest.raises(ExportError, match=r"Invalid value for `path`: `.*` is a folder; expected a file path"):
        export_tflite(qat, tmp_path, representative_data=xt[:10])
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ExportError, match=r"its folder `.*afile` does not exist \(or is not a folder\)"):
        export_tflite(qat, tmp_path / "afile" / "m.tflite", representative_data=xt[:10])
    nan = xt[:10].copy()
    nan[4, 0, 0, 0] = np.nan
    with pytest.raises(ExportError, match=r"Invalid value for `representative_data`: expected finite values\. "
                                          r"Received: NaN or Inf in 1 of 10 samples \(the first at index 4\)"):
        export_tflite(qat, tmp_path / "m.tflite", representative_data=nan)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]

    import errno

    def disk_full(src, dst):  # the file system fills up while the file is moved into place
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(ExportError, match=r"Cannot write `.*m\.tflite`: No space left on device\. Nothing was written"):
        export_tflite(qat, tmp_path / "m.tflite", representative_data=xt[:10])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no temporary file either


def test_invalid_c_array_name_fails_before_writing(train_qat, digits, tmp_path):
    (xt, _), _ = digits
    with pytest.raises(ValueError, match=r"Invalid value for `name`: expected a C identifier.*'model-data'"):
        export_tflite(train_qat(8, epochs=0), tmp_path / "m.tflite", representative_data=xt[:10], c_array="model-data")
    assert not os.listdir(tmp_path)


@keras.utils.register_keras_serializable(package="tfmpq_export_tests")
class Erf(keras.layers.Layer):
    """A layer with no TFLite builtin kernel (tf.math.erf needs TF Select)."""

    def call(self, inputs):
        return tf.math.erf(inputs)


def test_unsupported_op_leaves_no_file(digits, tmp_path):
    (xt, _), _ = digits
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 1))
    h = Erf()(keras.layers.Conv2D(4, 3, name="c")(i))
    model = keras.Model(i, keras.layers.Dense(10, name="d")(keras.layers.Flatten()(h)))
    qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, weight_bits=8))
    tfmpq.calibrate(qat, xt[:64])
    target = tmp_path / "m.tflite"
    target.write_bytes(b"previous export")
    with pytest.raises(ExportError, match=r"Cannot export: unsupported op\(s\) \['Erf'\]"):
        export_tflite(qat, target, representative_data=xt[:10], c_array="model_data")
    assert target.read_bytes() == b"previous export"  # an existing file is not touched
    assert sorted(os.listdir(tmp_path)) == ["m.tflite"]


def test_packed_needs_a_sub_8_bit_group(train_qat, digits, tmp_path):
    (xt, _), _ = digits
    with pytest.raises(ExportError, match=r"Invalid value for `packed`: no group was trained at 2\.\.7 bits"):
        export_tflite(train_qat(8, epochs=0), tmp_path / "m.tflite", representative_data=xt[:10], packed=True)
    assert not os.listdir(tmp_path)
