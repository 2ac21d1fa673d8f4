"""Tests of the model builders in models/ and of tfmpq.zoo (lookup, checkpoint, path resolution)."""
import collections
import os

import numpy as np
import pytest

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
}


def _layer_types(model):
    return collections.Counter(type(layer).__name__ for layer in model.layers)


def test_names_cover_every_builder():
    assert zoo.names() == list(STRUCTURE)
    assert zoo.checkpoints() == ["small_cnn_fmnist"]


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
])
def test_invalid_arguments_are_explained(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.get(name, **kwargs)


def test_resnet_depth_must_be_6n_plus_2():
    from models.resnet import build_resnet

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
    assert accuracy > 0.85  # 0.8805 on all 2,000 test images (models/README.md)


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

    _, accuracy, _ = train("small_cnn", epochs=2, verbose=0)
    assert accuracy > 0.8


def test_train_demo_pads_28_to_32_with_zeros():
    from models.train_demo import _pad_to

    padded = _pad_to(np.ones((2, 28, 28, 1), np.float32), 32)
    assert padded.shape == (2, 32, 32, 1) and padded.sum() == 2 * 28 * 28
    assert padded[:, :2].sum() == 0 and padded[:, -2:].sum() == 0
