"""Issue 27, items 1 and 6: nested models (a Sequential block, a Keras Applications backbone) flattened.

Every weighted layer inside a nested Sequential or functional model, at any depth, is a group named
``<nested model>/<layer>``; the flat model computes the same outputs (to float rounding) and tracks the
original's weights. Keras 3 models convert to the same flat graph. The slow tests train Keras
Applications backbones (MobileNetV2, EfficientNetB0, ResNet50; ``weights=None``, 32x32) nested in a
transfer-learning model, in Keras 3 and in tf_keras, on real images, and export them at 8 bits: the file
scores within 1 pp of the 8-bit Keras model it was exported from, on LiteRT.
"""
import os
import warnings

import numpy as np
import pytest

import tfmpq
from tfmpq._keras import keras

L = keras.layers


def build_nested(layers_module, model_module):
    """Sequential(functional(Input, Sequential(conv, BN, ReLU), conv), BN, pooling, Dense): two levels deep,
    with a BatchNormalization outside the nested model that follows the conv inside it."""
    Lm = layers_module
    inner = model_module.Sequential([Lm.Input((8, 8, 3)), Lm.Conv2D(8, 3, padding="same", name="conv"),
                                     Lm.BatchNormalization(name="bn"), Lm.ReLU(name="relu")], name="inner")
    i = Lm.Input((8, 8, 3), name="x")
    h = inner(i)
    h = Lm.DepthwiseConv2D(3, padding="same", name="dw")(h)
    middle = model_module.Model(i, Lm.Conv2D(12, 1, name="project")(h), name="middle")
    return model_module.Sequential([Lm.Input((8, 8, 3), name="image"), middle, Lm.BatchNormalization(name="project_bn"),
                                    Lm.GlobalAveragePooling2D(name="gap"), Lm.Dense(10, name="head")], name="outer")


def randomize(model, seed=0):
    """Random weights everywhere (BN statistics included), in either Keras."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        value = rng.uniform(0.5, 1.5, shape) if "variance" in w.name or "gamma" in w.name else rng.normal(0, 0.3, shape)
        w.assign(value.astype("float32"))
    return model


def signature(groups):
    return [(g.name, g.kind, g.layers, g.params, g.macs, g.has_bn, g.activation, g.input_group) for g in groups]


def test_nested_models_at_any_depth_are_flattened_into_groups():
    model = randomize(build_nested(L, keras))
    groups = tfmpq.quantizable_groups(model)
    assert [(g.name, g.layers) for g in groups] == [
        ("middle/inner/conv", ("middle/inner/conv", "middle/inner/bn", "middle/inner/relu")),
        ("middle/dw", ("middle/dw",)),
        ("middle/project", ("middle/project", "project_bn")),  # the BN outside the nested model folds in
        ("head", ("head",)),
    ]
    assert tfmpq.float_layers(model) == {}
    flat = tfmpq.as_tf_keras(model)
    assert not any(isinstance(layer, keras.Model) for layer in flat.layers)
    x = np.random.default_rng(1).random((16, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(flat(x), model(x), rtol=0, atol=1e-5)
    qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 32, 32))  # every group, nothing quantized
    np.testing.assert_allclose(qat(x, training=False), model(x), rtol=0, atol=1e-4)


def test_a_keras3_nested_model_converts_to_the_same_flat_groups():
    keras3 = pytest.importorskip("keras")
    if not keras3.__version__.startswith("3."):
        pytest.skip("Keras 3 is not installed")
    k3_model = randomize(build_nested(keras3.layers, keras3))
    tf_model = build_nested(L, keras)
    tf_model.set_weights(k3_model.get_weights())
    assert signature(tfmpq.quantizable_groups(k3_model)) == signature(tfmpq.quantizable_groups(tf_model))
    x = np.random.default_rng(1).random((16, 8, 8, 3)).astype("float32")
    reference = np.asarray(k3_model(x))
    np.testing.assert_allclose(tfmpq.as_tf_keras(k3_model)(x), reference, rtol=0, atol=1e-5 * np.abs(reference).max())


def test_the_flat_model_follows_the_weights_and_flags_of_the_original():
    model = build_nested(L, keras)
    flat = tfmpq.as_tf_keras(model)
    conv = model.get_layer("middle").get_layer("inner").get_layer("conv")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel + 1.0, bias])
    model.get_layer("middle").trainable = False
    assert tfmpq.as_tf_keras(model) is flat  # the same object, synced again
    np.testing.assert_array_equal(flat.get_layer("middle/inner/conv").get_weights()[0], kernel + 1.0)
    assert not flat.get_layer("middle/inner/conv").trainable and flat.get_layer("head").trainable


def test_a_nested_model_called_twice_shares_its_layers_and_says_so():
    keras.utils.set_random_seed(0)
    block = keras.Sequential([L.Input((6,)), L.Dense(6, name="fc")], name="block")
    i = L.Input((6,))
    model = keras.Model(i, L.Dense(2, name="head")(block(block(i))), name="twice")
    assert [g.name for g in tfmpq.quantizable_groups(model)] == ["head"]
    assert tfmpq.float_layers(model) == {"block/fc": "the layer is shared (called more than once)"}
    with pytest.warns(UserWarning, match=r"`block/fc` \(the layer is shared"):
        tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 8))


def test_nested_names_survive_keras_h5_and_the_qat_model_file(tmp_path):
    model = randomize(build_nested(L, keras))
    flat = tfmpq.as_tf_keras(model)
    x = np.random.default_rng(1).random((4, 8, 8, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras calls .h5 "legacy"
        for name in ("flat.keras", "flat.h5"):
            flat.save(tmp_path / name)
            loaded = keras.models.load_model(tmp_path / name, compile=False)
            assert [layer.name for layer in loaded.layers] == [layer.name for layer in flat.layers]
            np.testing.assert_allclose(loaded(x), flat(x), atol=1e-6)
        qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 4))
        tfmpq.calibrate(qat, x)
        qat.save(tmp_path / "qat.h5", include_optimizer=False)  # the file `tfmpq quantize` writes
        with tfmpq.quantize_scope():
            loaded = keras.models.load_model(tmp_path / "qat.h5")
    np.testing.assert_allclose(loaded(x), qat(x), atol=1e-6)
    assert sorted(tfmpq.policy_of(loaded)) == sorted(g.name for g in tfmpq.quantizable_groups(model))


# --------------------------------------------------------------------------------------------------
# Keras Applications backbones, as transfer learning nests them.

APPLICATIONS = {"MobileNetV2": dict(alpha=0.35), "EfficientNetB0": {}, "ResNet50": {}}


def transfer_model(kmodule, arch: str, seed: int = 0):
    """``Sequential([backbone(include_top=False), GlobalAveragePooling2D, Dropout, Dense(10)])`` and the flat
    functional build of the same (same seed: same weights), each backbone's BN at momentum 0.9."""
    models = []
    for nested in (True, False):
        kmodule.utils.set_random_seed(seed)
        backbone = getattr(kmodule.applications, arch)(include_top=False, weights=None, input_shape=(32, 32, 3),
                                                       **APPLICATIONS[arch])
        for layer in backbone.layers:
            if type(layer).__name__ == "BatchNormalization":
                layer.momentum = 0.9  # trained briefly: the moving statistics must keep up
        head = [kmodule.layers.GlobalAveragePooling2D(name="gap"), kmodule.layers.Dropout(0.2, name="drop"),
                kmodule.layers.Dense(10, name="classes")]
        if nested:
            models.append((kmodule.Sequential([kmodule.Input((32, 32, 3))] + [backbone] + head, name="transfer"),
                           backbone.name))
        else:
            h = backbone.output
            for layer in head:
                h = layer(h)
            models.append((kmodule.Model(backbone.input, h, name="flat"), None))
    (nested_model, prefix), (flat_model, _) = models
    return nested_model, flat_model, prefix


def check_groups_and_outputs(nested, flat, prefix, x):
    """The nested model's groups are the flat build's, their names prefixed; same outputs."""
    groups = tfmpq.quantizable_groups(nested)
    strip = lambda name: name[len(prefix) + 1:] if name and name.startswith(prefix + "/") else name  # noqa: E731
    renamed = [(strip(g.name), g.kind, tuple(map(strip, g.layers)), g.params, g.macs, g.has_bn, g.activation,
                strip(g.input_group)) for g in groups]
    assert renamed == signature(tfmpq.quantizable_groups(flat))
    assert all(g.name.startswith(prefix + "/") for g in groups[:-1]) and groups[-1].name == "classes"
    reference = np.asarray(nested(x, training=False))
    np.testing.assert_allclose(np.asarray(tfmpq.as_tf_keras(nested)(x, training=False)), reference, rtol=0,
                               atol=1e-4 * max(np.abs(reference).max(), 1e-6))
    return groups


def test_a_mobilenetv2_backbone_nested_in_sequential_gives_the_flat_builds_groups():
    """The cheap representative of the slow tests below: tf_keras, untrained."""
    nested, flat, prefix = transfer_model(keras, "MobileNetV2")
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")
    groups = check_groups_and_outputs(nested, flat, prefix, x)
    assert len(groups) == 53 and groups[3].name == f"{prefix}/block_1_expand"
    assert tfmpq.float_layers(nested) == {}


def fashion_32x32(num_train: int, num_test: int):
    """tfmpq's Fashion-MNIST subset (real images), zero-padded to 32x32 and repeated to 3 channels."""
    ds = tfmpq.data.load("default", num_train=num_train, num_test=num_test, seed=0)
    prep = lambda x: np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)  # noqa: E731
    return (prep(ds.x_train), ds.y_train), (prep(ds.x_test), ds.y_test)


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(APPLICATIONS))
@pytest.mark.parametrize("which", ["keras3", "tf_keras"])
def test_keras_applications_backbones_nested_train_export_and_run(arch, which, tmp_path):
    if which == "keras3":
        kmodule = pytest.importorskip("keras")
        if not kmodule.__version__.startswith("3."):
            pytest.skip("Keras 3 is not installed")
    else:
        kmodule = keras
    (x, y), (xt, yt) = fashion_32x32(4000, 1000)
    scale = 255.0 if arch == "EfficientNetB0" else 1.0  # EfficientNet rescales 0..255 inside the model
    x, xt = x * scale, xt * scale
    nested, flat, prefix = transfer_model(kmodule, arch)
    groups = check_groups_and_outputs(nested, flat, prefix, xt[:8])
    floats = tfmpq.float_layers(nested)
    assert floats == ({f"{prefix}/normalization": floats.get(f"{prefix}/normalization")} if arch == "EfficientNetB0"
                      else {})
    nested.compile(optimizer=kmodule.optimizers.Adam(1e-3),
                   loss=kmodule.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    nested.fit(x, y, epochs=5, batch_size=64, verbose=0)
    keras_acc = float(np.mean(np.asarray(nested.predict(xt, verbose=0)).argmax(-1) == yt))
    assert keras_acc > 0.5  # trained enough for the comparison to mean something (chance: 0.1)
    qat = tfmpq.quantize_model(nested, tfmpq.QuantPolicy.uniform(nested, 8))
    assert len(tfmpq.group_layers(qat)) == len(groups)
    path = tmp_path / f"{arch}.tflite"
    with pytest.warns(UserWarning, match="never set"):  # never calibrated: the export calibrates (item 5)
        report = tfmpq.export_tflite(qat, path, representative_data=x[:256])
    assert report.runtimes == ["litert", "tflm"] and report.arena_bytes
    # The 8-bit Keras model the file was exported from (its ranges now set by the export's calibration)
    qat_acc = float(np.mean(np.asarray(qat.predict(xt, verbose=0)).argmax(-1) == yt))
    litert_acc = tfmpq.evaluate_tflite(path, xt, yt, runtime="litert")
    print(f"{which} {arch}: {len(groups)} groups, float Keras {keras_acc:.4f}, 8-bit Keras {qat_acc:.4f}, "
          f"LiteRT {litert_acc:.4f}, {os.path.getsize(path)} B, arena {report.arena_bytes} B")
    assert abs(litert_acc - qat_acc) <= 0.01, (litert_acc, qat_acc)  # the file is the Keras model it came from
    assert abs(litert_acc - keras_acc) <= 0.03, (litert_acc, keras_acc)  # 8-bit calibration of a brief training
    np.testing.assert_array_equal(tfmpq.run_tflite(path, xt[:8], runtime="tflm"),
                                  tfmpq.run_tflite(path, xt[:8], runtime="litert"))
