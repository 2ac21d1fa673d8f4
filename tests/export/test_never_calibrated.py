"""Issue 27, item 5: a QAT model that was never trained nor calibrated exports with calibrated ranges.

Its activation ranges still held their initial [-6, 6], and the export shipped them (the issue's Keras 3 CNN:
74.6% on LiteRT against 78.3% in float). `export_tflite` now calibrates every range never set from
`representative_data`, exactly as `tfmpq.calibrate` would, warns, and notes it in the report.
"""
import warnings

import numpy as np
import pytest

import tfmpq
from tfmpq.quantize import unset_ranges

from export_helpers import copy_model, keras_accuracy


def _quantized(float_cnn):
    model = copy_model(float_cnn)
    return tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 8))


def test_export_calibrates_ranges_never_set_as_calibrate_does(float_cnn, digits, tmp_path):
    (x, _), (xt, yt) = digits
    fresh = _quantized(float_cnn)
    assert len(unset_ranges(fresh)) == 5  # the input and the four groups' outputs
    with pytest.warns(UserWarning, match=r"5 activation range\(s\) of `.*` were never set \(the model was neither "
                                         r"trained nor calibrated\): calibrated from `representative_data` \(256 "
                                         r"samples\)"):
        report = tfmpq.export_tflite(fresh, tmp_path / "fresh.tflite", representative_data=x[:256])
    assert any("never set" in n for n in report.notes)
    assert unset_ranges(fresh) == []  # the QAT model holds the ranges its file deploys
    calibrated = _quantized(float_cnn)
    tfmpq.calibrate(calibrated, x[:256])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report_2 = tfmpq.export_tflite(calibrated, tmp_path / "calibrated.tflite", representative_data=x[:256])
    assert not any("never set" in str(w.message) for w in record)  # nothing to calibrate
    assert not any("never set" in n for n in report_2.notes)
    assert (tmp_path / "fresh.tflite").read_bytes() == (tmp_path / "calibrated.tflite").read_bytes()
    deployed = tfmpq.evaluate_tflite(tmp_path / "fresh.tflite", xt, yt)
    assert deployed >= keras_accuracy(float_cnn, xt, yt) - 0.02


def test_calibrate_only_unset_keeps_the_ranges_already_set(float_cnn, digits):
    (x, _), _ = digits
    qat = _quantized(float_cnn)
    tfmpq.calibrate(qat, x[:64])
    ranges = tfmpq.quantize.api._activation_ranges(qat)  # noqa: SLF001
    before = {n: (float(v["min_var"].numpy()), float(v["max_var"].numpy())) for n, v in ranges.items()}
    reset = next(iter(ranges))
    ranges[reset]["seen"].assign(0.0)
    ranges[reset]["min_var"].assign(-6.0)
    assert unset_ranges(qat) == [reset]
    tfmpq.calibrate(qat, 2.0 * x[64:128], only_unset=True)  # other data: only `reset` may change
    after = {n: (float(v["min_var"].numpy()), float(v["max_var"].numpy())) for n, v in ranges.items()}
    assert unset_ranges(qat) == []
    assert all(after[n] == before[n] for n in before if n != reset)
    assert after[reset][0] == 0.0 and after[reset][1] == pytest.approx(2.0 * float(np.max(x[64:128])))
