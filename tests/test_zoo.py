"""Tests of the model builders of tfmpq.zoo and of its API (lookup, checkpoint, path resolution)."""
import collections
import json
import os
import shlex
import zipfile

import numpy as np
import pytest

import tfmpq
from tfmpq import data, zoo
from tfmpq._keras import keras

# name -> (parameter count at the defaults, {layer type: count}); pinned so a change is noticed.
STRUCTURE = {
    "small_cnn": (29402, {"Conv2D": 3, "BatchNormalization": 3, "Dense": 1, "MaxPooling2D": 3}),
    "mlp": (79510, {"Dense": 2, "Flatten": 1}),
    # 19 3x3 convs + 2 shortcut 1x1 convs (option B) + 1 Dense = 22 weighted layers; 9 residual Adds.
    "resnet20": (274042, {"Conv2D": 21, "BatchNormalization": 21, "Dense": 1, "Add": 9}),
    "resnet32": (469370, {"Conv2D": 33, "BatchNormalization": 33, "Dense": 1, "Add": 15}),
    "resnet56": (860026, {"Conv2D": 57, "BatchNormalization": 57, "Dense": 1, "Add": 27}),
    "mobilenet_v1": (221114, {"Conv2D": 14, "DepthwiseConv2D": 13, "BatchNormalization": 27, "Dense": 1}),
    "mobilenet_v2": (None, {"Conv2D": 35, "DepthwiseConv2D": 17, "Dense": 1, "Add": 10}),
    "vgg_small": (4663690, {"Conv2D": 6, "BatchNormalization": 6, "Dense": 1, "MaxPooling2D": 3}),
    # conv1 + 3 separable blocks (depthwise + pointwise) + the Flatten classifier: 8 groups.
    "dscnn": (93962, {"Conv2D": 4, "DepthwiseConv2D": 3, "BatchNormalization": 7, "Dense": 1, "Flatten": 1,
                      "Dropout": 1}),
}


def _layer_types(model):
    return collections.Counter(type(layer).__name__ for layer in model.layers)


def test_names_cover_every_builder():
    assert zoo.names() == list(STRUCTURE)
    assert zoo.checkpoints() == ["small_cnn_fmnist", "dscnn_fmnist", "mobilenet_v1_fmnist"]


@pytest.mark.parametrize("name", list(STRUCTURE))
def test_builder_structure_and_output(name):
    params, counts = STRUCTURE[name]
    model = zoo.get(name)
    assert isinstance(model, keras.Model) and model.output_shape == (None, 10)
    types = _layer_types(model)
    assert {t: types[t] for t in counts} == counts
    if params is None:  # Keras's own MobileNetV2 at alpha 0.35: pin only its size class
        assert 300_000 < model.count_params() < 600_000
    else:
        assert model.count_params() == params
    x = np.random.default_rng(0).random((2,) + model.input_shape[1:], dtype=np.float32)
    probs = model(x, training=False).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_builders_take_shape_and_classes():
    model = zoo.get("resnet20", input_shape=(28, 28, 1), num_classes=100, classifier_activation=None)
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 100)
    assert model.layers[-1].get_config()["activation"] == "linear"
    assert zoo.get("mobilenet_v1", input_shape=(64, 64, 3)).get_layer("conv1").strides == (2, 2)
    assert zoo.get("mobilenet_v1").get_layer("conv1").strides == (1, 1)
    assert zoo.get("vgg_small", width=0.25).count_params() < 400_000


def test_layer_names_are_stable_across_builds():
    names = [layer.name for layer in zoo.get("resnet20").layers]
    assert names == [layer.name for layer in zoo.get("resnet20").layers]
    assert "stage2_block1_shortcut" in names and "stage3_block3_add" in names


@pytest.mark.parametrize("name, kwargs, message", [
    ("nope", {}, r"unknown model. Received: name='nope'. Expected one of \['small_cnn', 'mlp'"),
    ("mobilenet_v1", {"input_shape": (28, 28, 1)}, r"`input_shape` of `mobilenet_v1`.*at least 32"),
    ("mobilenet_v2", {"input_shape": (16, 16, 3)}, r"`input_shape` of `mobilenet_v2`.*at least 32"),
    ("small_cnn", {"input_shape": (28, 28)}, r"expected \(height, width, channels\)"),
    ("small_cnn", {"num_classes": 1}, r"`num_classes`: expected an integer >= 2. Received: num_classes=1"),
    ("mlp", {"classifier_activation": "sigmoid"}, r"`classifier_activation`: expected 'softmax' or None"),
    ("dscnn", {"blocks": ((64, 3),)}, r"`blocks`: expected a non-empty sequence of \(pointwise filters, depthwise "
                                       r"stride\) pairs.*Received: blocks=\(\(64, 3\),\)"),
    ("dscnn", {"blocks": ()}, r"Invalid value for `blocks`"),
    ("dscnn", {"first_stride": 3}, r"`first_stride`: expected 1 or 2. Received: first_stride=3"),
    ("dscnn", {"dropout": 1.0}, r"`dropout`: expected a rate in \[0, 1\). Received: dropout=1.0"),
    ("dscnn", {"bn_momentum": 0.0}, r"`bn_momentum`: expected a number in \(0, 1\)"),
    ("dscnn", {"input_shape": (4, 4, 1)}, r"`input_shape` of `dscnn`.*at least 8"),
])
def test_invalid_arguments_are_explained(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.get(name, **kwargs)


def test_resnet_depth_must_be_6n_plus_2():
    from tfmpq.zoo.resnet import build_resnet

    with pytest.raises(ValueError, match=r"Invalid value for `depth`: expected 6n \+ 2.*Received: depth=21"):
        build_resnet(21)
    assert build_resnet(8).name == "resnet8"


def test_small_cnn_takes_a_training_step():
    model = zoo.get("small_cnn")
    model.compile("adam", "sparse_categorical_crossentropy")
    ds = data.load("default", num_train=20, num_test=10)
    assert np.isfinite(model.train_on_batch(ds.x_train, ds.y_train))


# ------------------------------------------------------------------ resolve_model

def test_resolve_zoo_builder_and_model_passthrough():
    model = zoo.resolve_model("zoo:mlp", num_classes=3)
    assert model.output_shape == (None, 3)
    assert zoo.resolve_model(model) is model


def test_shipped_checkpoint_is_small_and_accurate():
    path = zoo.checkpoint_path("small_cnn_fmnist")
    assert os.path.getsize(path) < 1024 * 1024
    model = zoo.resolve_model("zoo:small_cnn_fmnist")
    ds = data.load("default", num_train=10, num_test=500)
    accuracy = (model.predict(ds.x_test, verbose=0).argmax(axis=1) == ds.y_test).mean()
    assert accuracy > 0.85  # 0.879 on all 2,000 test images (tfmpq/zoo/checkpoints/small_cnn_fmnist.json)


def test_checkpoint_takes_no_builder_arguments():
    with pytest.raises(ValueError, match=r"takes no builder arguments. Received: \['num_classes'\]"):
        zoo.resolve_model("zoo:small_cnn_fmnist", num_classes=3)


def test_unknown_zoo_name_lists_models_and_checkpoints():
    with pytest.raises(ValueError, match=r"unknown zoo model. Received: spec='zoo:resnet18'.*small_cnn_fmnist"):
        zoo.resolve_model("zoo:resnet18")


def test_missing_file_names_the_path(tmp_path):
    missing = str(tmp_path / "missing.keras")
    with pytest.raises(FileNotFoundError, match=f"Model file not found: '{missing}'"):
        zoo.resolve_model(missing)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_saved_files_round_trip(tmp_path, suffix):
    model = zoo.get("mlp", hidden_units=8)
    path = str(tmp_path / f"mlp{suffix}")
    model.save(path)
    loaded = zoo.resolve_model(path)
    x = np.ones((1, 28, 28, 1), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_savedmodel_folder_loads(tmp_path):
    model = zoo.get("mlp", hidden_units=4)
    model.save(str(tmp_path / "saved"), save_format="tf")
    assert zoo.resolve_model(str(tmp_path / "saved")).output_shape == (None, 10)


def test_unreadable_file_is_a_model_load_error(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"not a model")
    with pytest.raises(zoo.ModelLoadError, match=r"Cannot load a tf_keras model from .*junk.h5"):
        zoo.resolve_model(str(path))


def test_non_string_spec_is_rejected():
    with pytest.raises(ValueError, match=r"Invalid value for `spec`.*Received: spec=42"):
        zoo.resolve_model(42)


@pytest.mark.slow
def test_train_demo_reaches_80_percent_in_two_epochs():
    from models.train_demo import train

    _, record = train("small_cnn", epochs=2, verbose=0)
    assert record["test_accuracy"] > 0.8


def test_pad_to_pads_28_to_32_with_zeros_and_refuses_smaller():
    ds = data.Dataset(np.ones((2, 28, 28, 1), np.float32), np.zeros(2, np.int64), np.ones((1, 28, 28, 1), np.float32),
                      np.zeros(1, np.int64), "ones", 10, (28, 28, 1))
    padded = data.pad_to(ds, 32)
    assert padded.x_train.shape == (2, 32, 32, 1) and padded.x_train.sum() == 2 * 28 * 28
    assert padded.x_train[:, :2].sum() == 0 and padded.x_train[:, -2:].sum() == 0
    assert padded.x_test.shape == (1, 32, 32, 1) and padded.input_shape == (32, 32, 1)
    assert ds.x_train.shape == (2, 28, 28, 1)  # the original is not changed
    with pytest.raises(ValueError, match="Invalid value for `size`: expected an integer >= the images' 28x28"):
        data.pad_to(ds, 27)


# ------------------------------------------------------------------ shipped checkpoints and their records

# What every record must say (zoo.checkpoint_info); models/train_demo.py writes them all.
RECORD_FIELDS = (
    "name", "checkpoint", "model", "model_args", "dataset", "validation", "num_train", "num_validation", "num_test",
    "input_shape", "num_classes", "epochs", "best_epoch", "batch_size", "augmentation", "optimizer", "schedule",
    "bn_momentum",
    "seed", "val_accuracy", "test_accuracy", "test_accuracy_first_2000", "params", "train_seconds", "wall_seconds",
    "command", "git_commit",
)
# The groups of the shipped dscnn: (name, kind, folded layers); every conv with its BN and ReLU folded.
DSCNN_GROUPS = [(n, k, (n, f"{n}_bn", f"{n}_relu")) for n, k in (
    ("conv1", "Conv2D"), ("b1_dw", "DepthwiseConv2D"), ("b1_pw", "Conv2D"), ("b2_dw", "DepthwiseConv2D"),
    ("b2_pw", "Conv2D"), ("b3_dw", "DepthwiseConv2D"), ("b3_pw", "Conv2D"))] + [("predictions", "Dense", ("predictions",))]
FASHION_MNIST = data.DEBIAN_FASHION_MNIST


def _near_ties(probs: np.ndarray, tol: float = 1e-4) -> int:
    """Samples whose two highest outputs differ by less than ``tol``.

    Only these can change their predicted class between machines: float32 sums in another order
    (AVX2 vs AVX-512, thread count) move a softmax output of these models by ~1e-6, and ``tol`` leaves a
    hundredfold margin. So a checkpoint's number of correct predictions may differ from its record by
    at most this count, and by nothing on the machine that wrote the record.
    """
    top2 = np.sort(probs, axis=1)[:, -2:]
    return int(np.sum(top2[:, 1] - top2[:, 0] < tol))


def _assert_reproduces(model, x, y, recorded: float):
    probs = model.predict(x, batch_size=256, verbose=0)
    correct = int(np.sum(probs.argmax(axis=1) == y))
    assert abs(correct - round(recorded * len(y))) <= _near_ties(probs), (correct, recorded * len(y))
    return correct / len(y)


@pytest.mark.parametrize("name", zoo.checkpoints())
def test_every_checkpoint_has_a_complete_record(name):
    info = zoo.checkpoint_info(name)
    assert [f for f in RECORD_FIELDS if f not in info] == []
    assert info["name"] == name and zoo.checkpoint_path(name).endswith(info["checkpoint"])
    assert info["validation"] == {"fraction": 0.1, "seed": 0}
    assert info["bn_momentum"] == [0.9] and info["seed"] == 0 and 1 <= info["best_epoch"] <= info["epochs"]
    assert info["command"].startswith("python -m models.train_demo")
    assert len(info["git_commit"]) == 40
    model = zoo.resolve_model(f"zoo:{name}")
    assert model.count_params() == info["params"]
    # weights only, no optimizer state: float32 parameters plus the file's configuration and zip overhead
    assert os.path.getsize(zoo.checkpoint_path(name)) < 4 * info["params"] + 300 * 1024
    assert list(model.input_shape[1:]) == info["input_shape"] and model.output_shape == (None, info["num_classes"])
    assert info is not zoo.checkpoint_info(name)  # callers may change their copy


def test_small_cnn_record_reproduces_on_the_builtin_subset():
    """The record's accuracies are those of the shipped file on the data and split it names."""
    info = zoo.checkpoint_info("small_cnn_fmnist")
    ds = data.load(info["dataset"])
    (x_tr, _), (x_val, y_val) = data.split_validation(ds, **info["validation"])
    assert (len(x_tr), len(x_val), len(ds.y_test)) == (info["num_train"], info["num_validation"], info["num_test"])
    model = zoo.resolve_model("zoo:small_cnn_fmnist")
    _assert_reproduces(model, x_val, y_val, info["val_accuracy"])
    _assert_reproduces(model, ds.x_test, ds.y_test, info["test_accuracy"])


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason=f"needs Fashion-MNIST in {FASHION_MNIST} "
                                                              f"(apt-get install dataset-fashion-mnist)")
def test_dscnn_checkpoint_groups_and_test_accuracy():
    info = zoo.checkpoint_info("dscnn_fmnist")
    assert (info["model"], info["dataset"], info["num_train"], info["num_test"]) == ("dscnn", "fashion_mnist", 54000,
                                                                                     10000)
    model = zoo.resolve_model("zoo:dscnn_fmnist")
    groups = tfmpq.quantizable_groups(model)
    assert [(g.name, g.kind, g.layers) for g in groups] == DSCNN_GROUPS
    assert tfmpq.float_layers(model) == {}
    # Sizes two orders of magnitude apart: what a mixed-precision policy can exploit.
    assert groups[-1].params > 0.6 * sum(g.params for g in groups) and max(g.params for g in groups[:2]) < 400
    ds = data.load("fashion_mnist")
    n = 2000
    head = _assert_reproduces(model, ds.x_test[:n], ds.y_test[:n], info["test_accuracy_first_2000"])
    # The recorded accuracy on all 10,000 test images against the first 2,000: if the test set's order
    # is random (Fashion-MNIST's is), the correct ones among the first n are hypergeometric, with
    # standard deviation sqrt(p (1 - p) (N - n) / ((N - 1) n)); 4 of them (~1 pp) fail by chance 6e-5.
    p, big_n = info["test_accuracy"], info["num_test"]
    sd = np.sqrt(p * (1 - p) * (big_n - n) / ((big_n - 1) * n))
    assert abs(head - p) <= 4 * sd, (head, p, sd)
    assert info["test_accuracy"] > 0.9 and info["val_accuracy"] > 0.9


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason=f"needs Fashion-MNIST in {FASHION_MNIST} "
                                                              f"(apt-get install dataset-fashion-mnist)")
def test_mobilenet_checkpoint_groups_and_test_accuracy():
    """MobileNet-0.25 (MLPerf Tiny's visual-wake-words architecture) on Fashion-MNIST padded to 32x32: 28
    groups of sizes three orders of magnitude apart."""
    info = zoo.checkpoint_info("mobilenet_v1_fmnist")
    assert (info["model"], info["dataset"], info["padded_to"], info["num_train"]) == ("mobilenet_v1", "fashion_mnist",
                                                                                      32, 54000)
    model = zoo.resolve_model("zoo:mobilenet_v1_fmnist")
    groups = tfmpq.quantizable_groups(model)
    assert len(groups) == 28 and tfmpq.float_layers(model) == {}
    assert [g.kind for g in groups].count("DepthwiseConv2D") == 13 and groups[-1].kind == "Dense"
    assert max(g.params for g in groups) > 100 * min(g.params for g in groups)
    ds = zoo.checkpoint_dataset("mobilenet_v1_fmnist")
    assert ds.input_shape == (32, 32, 1)
    _assert_reproduces(model, ds.x_test[:2000], ds.y_test[:2000], info["test_accuracy_first_2000"])
    assert info["test_accuracy"] > 0.9 and info["val_accuracy"] > 0.9


def test_checkpoint_info_errors(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"unknown checkpoint. Received: name='nope'"):
        zoo.checkpoint_info("nope")
    monkeypatch.setattr(zoo, "checkpoint_path", lambda name: str(tmp_path / f"{name}.keras"))
    with pytest.raises(zoo.ModelLoadError, match=r"Cannot read the record of checkpoint `x` at .*x.json: "
                                                  r"FileNotFoundError"):
        zoo.checkpoint_info("x")
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(zoo.ModelLoadError, match=r"expected a JSON object. Received: list"):
        zoo.checkpoint_info("x")


@pytest.fixture
def restores_op_determinism():
    """train_demo enables TensorFlow's deterministic ops process-wide; give later tests the state back."""
    from tensorflow.python.framework import config

    before = config.is_op_determinism_enabled()
    yield
    if not before:
        config.disable_op_determinism()


def test_train_demo_writes_a_record_that_reproduces(tmp_path, restores_op_determinism, capsys):
    from models.train_demo import main

    out = str(tmp_path / "mlp_digits.keras")
    argv = ["--model", "mlp", "--dataset", "digits", "--epochs", "3", "--model-args", '{"hidden_units": 16}',
            "--augment", "flip_shift", "--out", out]
    main(argv)
    assert "saved" in capsys.readouterr().out
    with open(tmp_path / "mlp_digits.json") as f:
        info = json.load(f)
    assert [f for f in RECORD_FIELDS if f not in info] == []
    assert shlex.split(info["command"]) == ["python", "-m", "models.train_demo", *argv]
    assert info["model_args"] == {"hidden_units": 16} and info["validation"] == {"fraction": 0.1, "seed": 0}
    assert info["augmentation"] == {"name": "flip_shift", "horizontal_flip": 0.5, "max_shift": 2}
    assert len(info["history"]["val_accuracy"]) == 3
    assert info["best_epoch"] == 1 + int(np.argmax(info["history"]["val_accuracy"]))
    ds = data.load("digits")
    (x_tr, _), (x_val, y_val) = data.split_validation(ds, 0.1, seed=0)
    assert info["num_train"] == len(x_tr) and info["num_test"] == len(ds.y_test)
    assert info["test_accuracy_first_2000"] is None  # digits has only 360 test images
    model = zoo.resolve_model(out)
    # Same machine, same weights: exactly the recorded numbers (the best epoch's, as recorded).
    assert model.count_params() == info["params"]
    val = float(np.mean(model.predict(x_val, verbose=0).argmax(axis=1) == y_val))
    assert val == info["val_accuracy"] == pytest.approx(info["history"]["val_accuracy"][info["best_epoch"] - 1],
                                                        abs=1e-6)
    test = float(np.mean(model.predict(ds.x_test, verbose=0).argmax(axis=1) == ds.y_test))
    assert test == info["test_accuracy"]
    with zipfile.ZipFile(out) as z:  # no optimizer state in the checkpoint
        assert not any("optimizer" in n for n in z.namelist())


def test_train_demo_rejects_bad_model_args(capsys):
    from models.train_demo import main

    with pytest.raises(SystemExit):
        main(["--model", "mlp", "--model-args", "[16]"])
    assert "--model-args: expected a JSON object. Received: '[16]'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason=f"needs Fashion-MNIST in {FASHION_MNIST}")
def test_dscnn_checkpoint_quantizes_and_exports(tmp_path):
    """An 8-bit QAT copy of the shipped dscnn calibrates, exports to int8 TFLite and keeps its accuracy."""
    model = zoo.resolve_model("zoo:dscnn_fmnist")
    ds = data.load("fashion_mnist")
    qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 8))
    tfmpq.calibrate(qat, ds.x_train[:1024])
    x, y = ds.x_test[:1000], ds.y_test[:1000]
    report = tfmpq.export_tflite(qat, str(tmp_path / "dscnn.tflite"), ds.x_train[:256])
    assert [g["name"] for g in report.groups] == [g[0] for g in DSCNN_GROUPS]
    float_acc = float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))
    tflite_acc = tfmpq.evaluate_tflite(str(tmp_path / "dscnn.tflite"), x, y)
    # 8-bit post-training calibration of a BN-folded net costs well under 1 pp here; 2 pp is 3 standard
    # deviations of a 1,000-image accuracy (sqrt(0.92 * 0.08 / 1000) = 0.86 pp) above that.
    assert tflite_acc > float_acc - 0.02


def test_flip_shift_flips_and_shifts_without_changing_the_content():
    from models.train_demo import flip_shift

    x = np.random.default_rng(0).random((4, 6, 7, 2)).astype(np.float32)
    assert np.array_equal(flip_shift(x, np.random.default_rng(1), flip=0.0, max_shift=0), x)
    assert np.array_equal(flip_shift(x, np.random.default_rng(1), flip=1.0, max_shift=0), x[:, :, ::-1])
    # A 2x2 square away from the border: every shift by <= 2 keeps it whole, at most 2 pixels away.
    square = np.zeros((64, 10, 10, 1), np.float32)
    square[:, 4:6, 4:6] = 1
    out = flip_shift(square, np.random.default_rng(2), flip=0.5, max_shift=2)
    assert out.shape == square.shape and np.all(out.sum(axis=(1, 2, 3)) == 4)
    corners = np.array([np.argwhere(o[..., 0])[0] for o in out])
    assert corners.min() >= 2 and corners.max() <= 6 and len(np.unique(corners, axis=0)) > 10
    # Flips (a 2x2 square flips onto itself) must also happen: check on an asymmetric image.
    flipped = flip_shift(x, np.random.default_rng(3), flip=0.5, max_shift=0)
    which = [np.array_equal(f, xi[:, ::-1]) for f, xi in zip(flipped, x)]
    same = [np.array_equal(f, xi) for f, xi in zip(flipped, x)]
    assert all(a != b for a, b in zip(which, same))


def test_augmented_batches_do_not_depend_on_the_order_they_are_asked_for():
    from models.train_demo import _AugmentedBatches

    x = np.random.default_rng(0).random((100, 8, 8, 1)).astype(np.float32)
    y = np.arange(100)
    a, b = _AugmentedBatches(x, y, 32, 0, 0.5, 2), _AugmentedBatches(x, y, 32, 0, 0.5, 2)
    assert len(a) == 4
    forward = [a[i] for i in range(4)]
    backward = [b[i] for i in reversed(range(4))][::-1]
    for (xa, ya), (xb, yb) in zip(forward, backward):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert sorted(np.concatenate([yb for _, yb in forward])) == list(range(100))  # each image once an epoch
    a.on_epoch_end()
    assert not np.array_equal(a[0][1], forward[0][1])  # a new order next epoch


def test_train_rejects_an_unknown_augmentation():
    from models.train_demo import train

    with pytest.raises(ValueError, match=r"Invalid value for `augment`: expected one of \['none', 'flip_shift'\]. "
                                         r"Received: augment='mixup'"):
        train("mlp", "digits", epochs=1, augment="mixup")
