"""Input checks (issue 13): bad data fails before any work, with one ValueError naming the argument."""
import warnings

import numpy as np
import pytest

import tfmpq
from tfmpq.checks import check_data, check_inputs
from tfmpq.evaluate import Evaluator


def _copy(data):
    (x, y), (xv, yv) = data
    return (x.copy(), y.copy()), (xv.copy(), yv.copy())


BAD_DATA = [
    # (what to break, argument named, message)
    ("nan_train", "train", r"expected finite values\. Received: NaN or Inf in 1 of 1400 samples \(the first at index 7\)"),
    ("inf_val", "val", r"expected finite values\. Received: NaN or Inf in 1 of 397 samples \(the first at index 3\)"),
    ("label_10", "train", r"expected class ids in 0\.\.9 \(the model has 10 outputs\)\. Received: 1 labels outside, such as \[10\]"),
    ("label_negative", "val", r"expected class ids in 0\.\.9 .* such as \[-1\]"),
    ("shape", "train", r"expected samples of shape \(8, 8, 1\) \(the model's input .*\)\. Received: samples of shape \(8, 8\)"),
    ("lengths", "train", r"expected as many labels as samples\. Received: 1400 samples and 1399 labels"),
    ("empty", "val", r"expected at least one sample\. Received: an empty set"),
    ("not_pair", "train", r"expected a pair \(x, y\) of arrays or a batched tf\.data\.Dataset\. Received: tuple of length 3"),
    ("float_label", "train", r"expected integer class ids\. Received: non-integer labels such as 2\.5"),
    ("one_hot_width", "val", r"expected sparse class ids \(N,\) or one-hot rows of the model's 10 outputs\. Received: labels of shape \(397, 9\)"),
]


@pytest.mark.parametrize("case,arg,message", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_evaluator_refuses_bad_data_before_any_work(digits_mlp, digits, case, arg, message):
    (x, y), (xv, yv) = _copy(digits)
    if case == "nan_train":
        x[7, 3, 3, 0] = np.nan
    elif case == "inf_val":
        xv[3, 0, 0, 0] = np.inf
    elif case == "label_10":
        y[5] = 10
    elif case == "label_negative":
        yv[0] = -1
    elif case == "shape":
        x = x[..., 0]
    elif case == "lengths":
        y = y[:-1]
    elif case == "empty":
        xv, yv = xv[:0], yv[:0]
    elif case == "float_label":
        y = y.astype("float32")
        y[0] = 2.5
    elif case == "one_hot_width":
        yv = np.eye(9, dtype="float32")[np.minimum(yv, 8)]
    train, val = ((x, y), (xv, yv))
    if case == "not_pair":
        train = (x, y, y)
    with pytest.raises(ValueError, match=rf"^Invalid value for `{arg}`: {message}"):
        Evaluator(digits_mlp, train, val, evaluation="ptq")


def test_every_search_checks_its_data_first(digits_mlp, digits, tmp_path):
    (x, y), val = _copy(digits)
    x[0, 0, 0, 0] = np.nan
    for search in (tfmpq.search.nsga2, tfmpq.search.bbpso):
        with pytest.raises(ValueError, match=r"Invalid value for `train`: expected finite values"):
            search(digits_mlp, (x, y), val, evaluation="ptq", run_dir=tmp_path / search.__name__, verbose=0)
        assert not (tmp_path / search.__name__ / "evaluations.jsonl").exists()  # nothing started


def test_good_data_passes_and_one_hot_labels_are_accepted(digits_mlp, digits):
    (x, y), (xv, yv) = digits
    out = check_data(digits_mlp, (x, y), name="train")
    assert out[0] is x and out[1] is y  # no copies of big arrays
    check_data(digits_mlp, (xv, np.eye(10, dtype="float32")[yv]), name="val")
    check_data(digits_mlp, (list(xv[:3]), list(yv[:3])), name="val")  # lists are arrays too


def test_uint8_pixels_for_a_model_without_rescaling_warn(digits_mlp, digits):
    (x, y), _ = digits
    raw = (x * 255).astype("uint8")
    with pytest.warns(UserWarning, match=r"`train` holds values up to 255 \(dtype uint8\): 0\.\.255 pixels\?"):
        check_data(digits_mlp, (raw, y), name="train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_data(digits_mlp, (x, y), name="train")  # [0, 1] floats: no warning


def test_calibrate_checks_its_inputs(digits_mlp, digits):
    (x, _), _ = digits
    qat = tfmpq.quantize_model(digits_mlp, tfmpq.QuantPolicy.uniform(digits_mlp, 8))
    bad = x[:64].copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match=r"Invalid value for `x`: expected finite values\. Received: NaN or Inf in 1 of 64"):
        tfmpq.calibrate(qat, bad)
    with pytest.raises(ValueError, match=r"Invalid value for `x`: expected samples of shape \(8, 8, 1\)"):
        tfmpq.calibrate(qat, np.zeros((4, 28, 28, 1), "float32"))


def test_dataset_shapes_are_checked_without_reading_values(digits_mlp, digits):
    from tfmpq._keras import tf

    (x, y), _ = digits
    wrong = tf.data.Dataset.from_tensor_slices((x[..., 0], y)).batch(32)
    with pytest.raises(ValueError, match=r"Invalid value for `train`: expected batches of samples of shape \(8, 8, 1\)"):
        check_data(digits_mlp, wrong, name="train")
    with pytest.raises(ValueError, match=r"expected a dataset of \(x, y\) batches"):
        check_data(digits_mlp, tf.data.Dataset.from_tensor_slices(x).batch(8), name="val")
    assert check_inputs(digits_mlp, tf.data.Dataset.from_tensor_slices(x).batch(8), name="x") is not None
