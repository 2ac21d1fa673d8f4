"""Issue 27, item 3: models with several inputs and outputs, from data to the runtimes.

`representative_data` (and every API that takes data) accepts a list / tuple of arrays in the model's input
order or a dict by input name; the export records the Keras names and order in the file (the converter keeps
neither: here it indexes `meta` before `image`), so the runtimes take the same forms and give every output
by name. Before, the export failed inside the converter ("Invalid input shapes: expected 2 items got 1 items").
"""
import json

import numpy as np
import pytest

import tfmpq
from tfmpq._keras import keras
from tfmpq.errors import ExportError
from tfmpq.export.flatbuffer import io_names, keras_io

from export_helpers import compile_model

L = keras.layers


@pytest.fixture(scope="module")
def two_way(digits):
    """digits image + a 4-value side input -> (digit logits `digit`, parity logits `parity`), trained briefly."""
    (x, y), (xv, yv) = digits
    rng = np.random.default_rng(0)
    side, side_v = rng.random((len(x), 4)).astype("float32"), rng.random((len(xv), 4)).astype("float32")
    keras.utils.set_random_seed(0)
    image, meta = L.Input((8, 8, 1), name="image"), L.Input((4,), name="meta")
    h = L.Conv2D(8, 3, padding="same", name="conv")(image)
    h = L.BatchNormalization(name="conv_bn")(h)
    h = L.ReLU(name="conv_relu")(h)
    h = L.Flatten(name="flat")(h)
    h = L.Concatenate(name="join")([h, L.Dense(4, activation="relu", name="side")(meta)])
    model = keras.Model([image, meta], [L.Dense(10, name="digit")(h), L.Dense(2, name="parity")(h)], name="two_way")
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit([x, side], [y, y % 2], epochs=4, batch_size=32, verbose=0)
    qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.from_bits(model, weight_bits=[4, 8, 8, 8]))
    tfmpq.calibrate(qat, {"image": x[:256], "meta": side[:256]})
    return model, qat, (x, side, y), (xv, side_v, yv)


def test_export_takes_a_list_or_a_dict_and_records_the_keras_order(two_way, tmp_path):
    _, qat, (x, side, _), (xv, side_v, _) = two_way
    by_list = tmp_path / "list.tflite"
    report = tfmpq.export_tflite(qat, by_list, representative_data=[x[:200], side[:200]])
    assert report.runtimes == ["litert", "tflm"]
    assert sorted(io_names(by_list)[0]) == ["image", "meta"]
    assert keras_io(by_list) == {"inputs": ["image", "meta"], "outputs": ["digit", "parity"]}
    by_dict = tmp_path / "dict.tflite"
    tfmpq.export_tflite(qat, by_dict, representative_data={"meta": side[:200], "image": x[:200]})
    assert by_dict.read_bytes() == by_list.read_bytes()  # the same calibration data, the same file
    qat_out = qat.predict([xv, side_v], verbose=0)
    for form in ([xv, side_v], (xv, side_v), {"meta": side_v, "image": xv}):
        out = tfmpq.run_tflite(by_list, form, dequantize_output=True)
        assert sorted(out) == ["digit", "parity"]
        for name, expected in zip(["digit", "parity"], qat_out):
            scale = np.abs(expected).max()
            assert np.abs(out[name] - expected).max() <= 0.05 * scale  # int8 rounding of a trained model
    litert = tfmpq.run_tflite(by_list, [xv, side_v], runtime="litert")
    tflm = tfmpq.run_tflite(by_list, {"image": xv, "meta": side_v}, runtime="tflm")
    for name in litert:
        np.testing.assert_array_equal(litert[name], tflm[name])  # bit-exact (Dense deployed as 1x1 CONV_2D)


def test_evaluate_tflite_scores_each_output_by_name(two_way, tmp_path):
    _, qat, (x, side, _), (xv, side_v, yv) = two_way
    path = tmp_path / "m.tflite"
    tfmpq.export_tflite(qat, path, representative_data=[x[:200], side[:200]])
    acc = tfmpq.evaluate_tflite(path, [xv, side_v], {"digit": yv, "parity": yv % 2}, runtime="tflm")
    keras_out = qat.predict([xv, side_v], verbose=0)
    expected = {"digit": np.mean(keras_out[0].argmax(-1) == yv), "parity": np.mean(keras_out[1].argmax(-1) == yv % 2)}
    assert acc["digit"] > 0.8
    for name in acc:
        assert abs(acc[name] - expected[name]) <= 0.02  # the QAT model's own accuracy, within rounding
    with pytest.raises(ValueError, match=r"expected a dict of labels by output name \('digit', 'parity'\)"):
        tfmpq.evaluate_tflite(path, [xv, side_v], yv)


def test_bad_inputs_name_the_input(two_way, tmp_path):
    _, qat, (x, side, _), _ = two_way
    with pytest.raises(ExportError, match=r"expected 2 arrays, one per model input \(`image`, `meta`\), as a list or "
                                          r"tuple in that order or a dict by input name\. Received: ndarray"):
        tfmpq.export_tflite(qat, tmp_path / "a.tflite", representative_data=x)
    with pytest.raises(ExportError, match=r"Received: a dict without `meta`"):
        tfmpq.export_tflite(qat, tmp_path / "a.tflite", representative_data={"image": x})
    with pytest.raises(ExportError, match=r"expected samples of shape \(4,\) \(the model's input `meta`\)"):
        tfmpq.export_tflite(qat, tmp_path / "a.tflite", representative_data=[x, side[:, :3]])
    with pytest.raises(ExportError, match=r"expected as many samples for every input\. Received: 1400 for `image`, "
                                          r"10 for `meta`"):
        tfmpq.export_tflite(qat, tmp_path / "a.tflite", representative_data=[x, side[:10]])
    bad = side.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"Invalid value for `x`: expected finite values"):
        tfmpq.calibrate(qat, (x, bad))
    assert not list(tmp_path.iterdir())


def test_a_search_and_its_export_take_several_inputs(two_way, tmp_path):
    """The Evaluator trains and scores a two-input, one-output model from a list and a dict."""
    model, _, (x, side, y), (xv, side_v, yv) = two_way
    single = keras.Model(model.inputs, model.outputs[0], name="digits_only")
    result = tfmpq.search.exhaustive(single, ([x, side], y), ({"image": xv, "meta": side_v}, yv), bits=(4, 8),
                                     pinned={"conv": 8, "side": 8}, evaluation="qat", epochs=1, verbose=0)
    assert len(result.candidates) == 2 and all(c.accuracy > 0.8 for c in result.candidates)
    with pytest.raises(ValueError, match=r"the Evaluator scores a classifier with one output\. Received: `two_way` "
                                         r"with outputs \['digit', 'parity'\]"):
        tfmpq.search.exhaustive(model, ([x, side], (y, y % 2)), ([xv, side_v], (yv, yv % 2)), bits=(8,), verbose=0)
    reports = result.export(tmp_path, test=((xv, side_v), yv), runtimes=("litert",))
    rows = json.loads((tmp_path / "export.json").read_text())
    assert len(rows) == len(reports) >= 1
    assert all(abs(r["accuracy"]["litert"] - r["keras_accuracy"]) <= 0.02 for r in rows)
