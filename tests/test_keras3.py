"""Keras 3 models in: converted to the equivalent tf_keras model at every public entry point.

"Equivalent" is checked three ways on real (small) models: the converted model has the same layers
(names, classes), connections and weights as the Keras 3 model; the same builder code run with
tf_keras gives the same quantizable groups; and the outputs agree with Keras 3's to float rounding.

Tolerance: both Kerases run the same TensorFlow kernels, so every layer but one agrees bit for bit
(measured: 0.0 difference on the models below without BatchNormalization). BatchNormalization in
inference is one fused kernel in tf_keras and ``(x - mean) * rsqrt(var + eps) * gamma + beta`` in
Keras 3: four float32 roundings, each at most eps32/2 relative, so at most 4 eps32 of the layer's
output scale per BatchNormalization; the networks normalise each block, so that relative error
reaches the output at about the output's scale. The bound is therefore
``4 * (num_batch_norms + 1) * eps32 * max|output|`` (the +1 for everything else); measured: at most
3.4 eps32 * max|output| on ResNet50 (53 BatchNormalizations, bound 216).
"""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import tfmpq
from tfmpq import convert, zoo
from tfmpq._keras import keras
from tfmpq.convert import keras3 as k3convert
from tfmpq.errors import ModelLoadError, UnsupportedModelError

keras3 = pytest.importorskip("keras", minversion="3.0")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS32 = float(np.finfo(np.float32).eps)


# --------------------------------------------------------------------------------------------------
# Builders: the same code builds the Keras 3 model and its tf_keras reference.


def build_functional(k):
    """Conv2D/BN/ReLU6, a residual DepthwiseConv2D, Concatenate, padding, pooling, Dense."""
    L = k.layers
    inputs = k.Input((16, 16, 3), name="image")
    x = L.Rescaling(1 / 255.0, name="scale")(inputs)
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    a = L.ReLU(6.0, name="stem_relu")(x)
    b = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(a)
    b = L.BatchNormalization(name="dw_bn")(b)
    b = L.Activation("relu", name="dw_relu")(b)
    x = L.Add(name="residual")([a, b])
    x = L.Concatenate(name="concat")([x, a])
    x = L.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(x)
    x = L.Conv2D(16, 3, strides=2, padding="valid", activation="relu", name="down")(x)
    x = L.AveragePooling2D(2, name="avg")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.25, name="drop")(x)
    x = L.Dense(24, kernel_regularizer=k.regularizers.L2(1e-3), kernel_constraint=k.constraints.MaxNorm(3.0),
                name="fc")(x)
    x = L.BatchNormalization(name="fc_bn")(x)
    x = L.ReLU(name="fc_relu")(x)
    outputs = L.Dense(10, activation="softmax", name="head")(x)
    return k.Model(inputs, outputs, name="k3_functional")


def build_sequential(k):
    L = k.layers
    return k.Sequential([
        k.Input((12, 12, 1), name="pixels"),
        L.Normalization(mean=0.5, variance=0.25, name="norm"),
        L.Conv2D(6, 3, use_bias=False, name="conv"),
        L.BatchNormalization(name="conv_bn"),
        L.ReLU(name="conv_relu"),
        L.MaxPooling2D(2, name="pool"),
        L.Flatten(name="flatten"),
        L.Dropout(0.1, name="drop"),
        L.Dense(5, name="logits"),
    ], name="k3_sequential")


def build_conv1d(k):
    L = k.layers
    inputs = k.Input((20, 3), name="signal")
    x = L.ZeroPadding1D(2, name="pad")(inputs)
    x = L.Conv1D(8, 5, activation="relu", name="conv1d")(x)
    x = L.MaxPooling1D(2, name="maxpool")(x)
    x = L.Conv1D(8, 3, padding="causal", name="causal")(x)
    x = L.AveragePooling1D(2, name="avgpool")(x)
    g = L.GlobalAveragePooling1D(name="gap")(x)
    m = L.GlobalMaxPooling1D(name="gmp")(x)
    x = L.Concatenate(name="concat")([g, m])
    return k.Model(inputs, L.Dense(4, name="out")(x), name="k3_conv1d")


def build_misc(k):
    """The remaining supported layers: merges, reshaping, noise, other activations, preprocessing."""
    L = k.layers
    inputs = k.Input((8, 8, 2), name="x")
    x = L.Rescaling(scale=[0.5, 2.0], offset=0.1, name="scale")(inputs)
    x = L.SeparableConv2D(4, 3, padding="same", name="sep")(x)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1, name="up")(x)
    x = L.LeakyReLU(name="leaky", **({"negative_slope": 0.1} if k is keras3 else {"alpha": 0.1}))(x)
    x = L.SpatialDropout2D(0.2, name="sdrop")(x)
    x = L.GaussianNoise(0.3, name="noise")(x)
    x = L.Cropping2D(((1, 0), (0, 1)), name="crop")(x)
    x = L.MaxPooling2D(2, padding="same", name="pool")(x)
    a = L.Conv2D(4, 1, name="a")(x)
    b = L.Conv2D(4, 1, name="b")(x)
    merged = [L.Subtract(name="sub")([a, b]), L.Multiply(name="mul")([a, b]), L.Average(name="avg")([a, b]),
              L.Maximum(name="max")([a, b]), L.Minimum(name="min")([a, b])]
    x = L.Concatenate(axis=-1, name="merges")(merged)
    g = L.GlobalMaxPooling2D(name="gmp")(x)
    h = L.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    h = L.Reshape((-1,), name="reshape")(h)
    x = L.Concatenate(name="pools")([g, h])
    x = L.Dense(6, name="dense")(x)
    return k.Model(inputs, L.Softmax(name="softmax")(x), name="k3_misc")


def _randomize(model, seed=0, kernels=False):
    """Random biases and BatchNormalization parameters and statistics (the defaults 0/1 would hide a
    mix-up of their order); kernels too with `kernels=True` (else they keep their random initial values,
    which keeps a 50-layer network's activations in range)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w, v in zip(layer.weights, layer.get_weights()):
            name = w.path.split("/")[-1] if hasattr(w, "path") else w.name.split("/")[-1].split(":")[0]
            if name in ("moving_variance", "gamma", "variance"):
                values.append(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
            elif name == "count" or ("kernel" in name and not kernels):
                values.append(v)
            else:
                values.append(rng.normal(0.0, 0.3, v.shape).astype(v.dtype))
        layer.set_weights(values)
    return model


def _x(model, n=6, seed=1):
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).uniform(0, 1, (n,) + shape).astype("float32")


def _num_batch_norms(model) -> int:
    return sum(_num_batch_norms(l) if hasattr(l, "layers") else type(l).__name__ == "BatchNormalization"
               for l in model.layers)


def _assert_same_outputs(reference, other, model):
    """Outputs equal up to the float rounding bound of the module docstring."""
    reference, other = np.asarray(reference), np.asarray(other)
    assert reference.shape == other.shape
    tol = 4 * (_num_batch_norms(model) + 1) * EPS32 * max(float(np.abs(reference).max()), 1e-30)
    assert float(np.abs(reference - other).max()) <= tol


def _check_equivalent(build):
    """Converts build(Keras 3); compares with Keras 3 and with build(tf_keras) given the same weights."""
    k3_model = _randomize(build(keras3))
    converted = convert.as_tf_keras(k3_model)
    reference = convert.flatten_model(build(keras))  # what tfmpq works on: SeparableConv2D split (issue 27)
    assert isinstance(converted, keras.Model) and type(converted) is type(reference)
    assert converted.name == k3_model.name
    # Same layers, in the same order, of the same classes, with the same weights.
    assert [(l.name, type(l).__name__) for l in converted.layers] == \
        [(l.name, type(l).__name__) for l in reference.layers]
    k3_layers = {l.name: l for l in k3_model.layers}
    for layer in converted.layers:
        if layer.name in k3_layers:
            for a, b in zip(layer.get_weights(), k3_layers[layer.name].get_weights()):
                np.testing.assert_array_equal(a, b)
    # Same connections: the tf_keras configs agree, except for the names tf_keras makes up for tensors.
    c_cfg, r_cfg = converted.get_config(), reference.get_config()
    assert [lc.get("inbound_nodes") for lc in c_cfg["layers"]] == [lc.get("inbound_nodes") for lc in r_cfg["layers"]]
    assert [lc["config"] for lc in c_cfg["layers"]] == [lc["config"] for lc in r_cfg["layers"]]
    # Same groups as the tf_keras build, whether asked with the Keras 3 model or the converted one.
    assert tfmpq.quantizable_groups(k3_model) == tfmpq.quantizable_groups(converted) == \
        tfmpq.quantizable_groups(reference)
    assert tfmpq.float_layers(k3_model) == tfmpq.float_layers(reference)
    # Same outputs (inference mode: Dropout and noise off).
    x = _x(k3_model)
    reference.set_weights(converted.get_weights())
    expected = np.asarray(k3_model(x, training=False))
    _assert_same_outputs(expected, converted(x, training=False), k3_model)
    _assert_same_outputs(expected, reference(x, training=False), k3_model)
    return k3_model, converted


# --------------------------------------------------------------------------------------------------
# Conversion.


def test_functional_model_converts_to_the_same_graph_weights_and_outputs():
    k3_model, converted = _check_equivalent(build_functional)
    groups = tfmpq.quantizable_groups(k3_model)
    assert [(g.name, g.kind, g.layers) for g in groups] == [
        ("stem", "Conv2D", ("stem", "stem_bn", "stem_relu")),
        ("dw", "DepthwiseConv2D", ("dw", "dw_bn", "dw_relu")),
        ("down", "Conv2D", ("down",)),
        ("fc", "Dense", ("fc", "fc_bn", "fc_relu")),
        ("head", "Dense", ("head",)),
    ]


def test_sequential_model_converts_to_a_tf_keras_sequential():
    k3_model, converted = _check_equivalent(build_sequential)
    assert isinstance(converted, keras.Sequential)
    assert [g.layers for g in tfmpq.quantizable_groups(k3_model)] == [("conv", "conv_bn", "conv_relu"), ("logits",)]


def test_conv1d_model_converts():
    _check_equivalent(build_conv1d)


def test_the_other_supported_layers_convert():
    _check_equivalent(build_misc)


def test_every_supported_layer_is_covered_by_these_tests():
    used = set()
    for build in (build_functional, build_sequential, build_conv1d, build_misc):
        used |= {type(l).__name__ for l in build(keras3).layers}
    assert set(k3convert.SUPPORTED_LAYERS) <= used, set(k3convert.SUPPORTED_LAYERS) - used


def test_adapted_normalization_keeps_its_statistics():
    data = np.random.default_rng(0).normal(3.0, 2.0, (200, 4)).astype("float32")
    norm = keras3.layers.Normalization(name="norm")
    norm.adapt(data)
    model = keras3.Sequential([keras3.Input((4,)), norm, keras3.layers.Dense(2, name="d")])
    converted = convert.as_tf_keras(model)
    _assert_same_outputs(model(data[:8]), converted(data[:8]), model)
    np.testing.assert_allclose(converted.get_layer("norm").get_weights()[0], data.mean(0), rtol=1e-5)


def test_every_supported_activation_computes_what_keras3_computes():
    inputs = keras3.Input((401,), name="x")
    branches = [keras3.layers.Activation(a, name=f"act_{a}")(inputs) for a in k3convert.SUPPORTED_ACTIVATIONS]
    model = keras3.Model(inputs, keras3.layers.Concatenate(name="all")(branches))
    converted = convert.as_tf_keras(model)
    x = np.linspace(-8, 8, 401, dtype="float32")[None]
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(converted(x)), rtol=4 * EPS32, atol=4 * EPS32)


def test_nested_model_converts_as_a_nested_model_then_flat():
    inner = keras3.Sequential([keras3.Input((6,)), keras3.layers.Dense(4, name="inner_dense")], name="inner")
    inputs = keras3.Input((6,), name="x")
    outputs = keras3.layers.Dense(3, name="outer_dense")(inner(inputs))
    model = _randomize(keras3.Model(inputs, outputs, name="outer"))
    _randomize(inner)
    assert isinstance(k3convert.to_tf_keras(model).get_layer("inner"), keras.Sequential)  # the converter
    converted = convert.as_tf_keras(model)  # what tfmpq works on: the flat graph (issue 27)
    assert [layer.name for layer in converted.layers] == ["x", "inner/inner_dense", "outer_dense"]
    x = _x(model)
    _assert_same_outputs(model(x), converted(x), model)


def test_the_same_keras3_model_gives_the_same_tf_keras_model_with_fresh_weights():
    model = build_sequential(keras3)
    first = convert.as_tf_keras(model)
    _randomize(model, seed=3, kernels=True)  # e.g. trained after the first call
    second = convert.as_tf_keras(model)
    assert second is first
    for a, b in zip(second.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.get_layer("conv").trainable = False
    assert convert.as_tf_keras(model).get_layer("conv").trainable is False
    model.add(keras3.layers.Dense(3, name="extra"))  # a changed structure: converted again
    third = convert.as_tf_keras(model)
    assert third is not first and third.layers[-1].name == "extra"


def test_tf_keras_models_and_other_objects_pass_through():
    model = build_sequential(keras)
    assert convert.as_tf_keras(model) is model
    assert convert.as_tf_keras(None) is None
    assert not convert.is_keras3_model(model) and convert.is_keras3_model(build_sequential(keras3))


# --------------------------------------------------------------------------------------------------
# Refusals: each names the layer and its class, and what is supported.


def _functional_with(layer_fn, shape=(8,)):
    inputs = keras3.Input(shape, name="x")
    return keras3.Model(inputs, layer_fn(inputs), name="bad")


def test_unsupported_layer_is_refused_by_name_and_class():
    model = _functional_with(lambda x: keras3.layers.LayerNormalization(name="ln")(x))
    with pytest.raises(UnsupportedModelError, match=r"Keras 3 layer `ln` \(LayerNormalization\) to tf_keras: not a "
                                                    r"layer tfmpq converts\. tfmpq converts these Keras 3 layers: "
                                                    r"Input, Conv1D, Conv2D, DepthwiseConv2D"):
        tfmpq.quantizable_groups(model)


def test_custom_layer_subclass_is_refused():
    class MyDense(keras3.layers.Dense):
        pass

    model = _functional_with(lambda x: MyDense(4, name="mine")(x))
    with pytest.raises(UnsupportedModelError, match=r"`mine` \(MyDense\) to tf_keras: a custom layer"):
        convert.as_tf_keras(model)


def test_keras_ops_in_the_graph_are_refused():
    def body(x):
        a = keras3.layers.Dense(4, name="a")(x)
        return keras3.ops.add(a, 1.0)

    with pytest.raises(UnsupportedModelError, match=r"it is a `keras.ops` call, not a layer"):
        convert.as_tf_keras(_functional_with(body))


def test_activation_that_differs_between_kerases_is_refused():
    model = _functional_with(lambda x: keras3.layers.Dense(4, activation="hard_sigmoid", name="hs")(x))
    with pytest.raises(UnsupportedModelError, match=r"`hs` \(Dense\).*activation 'hard_sigmoid' is not one tfmpq "
                                                    r"converts"):
        convert.as_tf_keras(model)


def test_option_tf_keras_lacks_is_refused_not_dropped():
    model = _functional_with(lambda x: keras3.layers.Dense(4, name="lora")(x))
    model.get_layer("lora").enable_lora(2)
    with pytest.raises(UnsupportedModelError, match=r"`lora` \(Dense\).*option `lora_rank=2` has no tf_keras"):
        convert.as_tf_keras(model)


def test_subclassed_and_unbuilt_keras3_models_are_refused():
    class Net(keras3.Model):
        def __init__(self):
            super().__init__()
            self.d = keras3.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(UnsupportedModelError, match="subclassed `Net`"):
        tfmpq.quantizable_groups(net)
    with pytest.raises(UnsupportedModelError, match="is not built"):
        tfmpq.quantizable_groups(keras3.Sequential([keras3.layers.Dense(2)]))


# --------------------------------------------------------------------------------------------------
# Every public entry point that takes a model.


@pytest.fixture(scope="module")
def digits_k3(digits):
    """A small Keras 3 CNN trained briefly on digits, and its data."""
    (x, y), (xv, yv) = digits
    keras3.utils.set_random_seed(0)
    L = keras3.layers
    inputs = keras3.Input((8, 8, 1), name="image")
    h = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    h = L.BatchNormalization(momentum=0.9, name="conv_bn")(h)
    h = L.ReLU(name="conv_relu")(h)
    h = L.Flatten(name="flatten")(h)
    outputs = L.Dense(10, name="head")(h)
    model = keras3.Model(inputs, outputs, name="digits_k3")
    model.compile(keras3.optimizers.Adam(1e-2), keras3.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model, (x[:256], y[:256]), (xv[:128], yv[:128])


def test_policy_metrics_and_quantize_model_accept_keras3(digits_k3):
    model, (x, _), _ = digits_k3
    converted = convert.as_tf_keras(model)
    policy = tfmpq.QuantPolicy.from_bits(model, weight_bits=[8, 4])
    assert policy == tfmpq.QuantPolicy.from_bits(converted, weight_bits=[8, 4])
    assert tfmpq.QuantPolicy.uniform(model, 4) == tfmpq.QuantPolicy.uniform(converted, 4)
    assert tfmpq.QuantPolicy.from_genes(model, [2, 8]).genes == (2, 8)
    assert policy.check_model(model) == tfmpq.quantizable_groups(converted)
    assert tfmpq.metrics.summary(model, policy) == tfmpq.metrics.summary(converted, policy)
    qat = tfmpq.quantize_model(model, policy)
    assert isinstance(qat, keras.Model)
    assert {g: (p["kind"], p["weight_bits"]) for g, p in tfmpq.policy_of(qat).items()} == \
        {"conv": ("Conv2D", 8), "head": ("Dense", 4)}
    assert qat(x[:4]).shape == (4, 10)


def test_evaluator_and_searches_accept_keras3(digits_k3):
    from tfmpq.search import Evaluator, exhaustive, make_space

    model, train, val = digits_k3
    ev = Evaluator(model, train, val, evaluation="ptq", seed=0)
    assert ev.model is convert.as_tf_keras(model)
    # The compiled Keras 3 loss, translated: logits in, so from_logits stays True.
    assert isinstance(ev.loss, keras.losses.SparseCategoricalCrossentropy) and ev.loss.get_config()["from_logits"]
    assert make_space(model, bits=(4, 8)).group_names == ("conv", "head")
    result = exhaustive(model, train, val, evaluation="ptq", bits=(8,), verbose=0)
    assert [c.policy.genes for c in result.candidates] == [(8, 8)] and result.candidates[0].ok
    assert result.candidates[0].accuracy > 0.5  # chance is 0.1: the search scored the trained weights


def test_bbpso_accepts_keras3(digits_k3):
    from tfmpq.search import bbpso

    model, train, val = digits_k3
    result = bbpso(model, train, val, evaluation="ptq", budget="avg_weight_bits", target=8, bits=(4, 8), swarm=2,
                   iterations=1, verbose=0)
    assert result.best is not None and result.report["float_accuracy"] is not None


def test_sensitivity_and_ilp_accept_keras3(digits_k3):
    from tfmpq.search import ilp

    model, train, val = digits_k3
    converted = convert.as_tf_keras(model)
    traces = tfmpq.sensitivity(model, train, num_probes=2, num_samples=64, seed=0)
    # the same probes on the same function: the traces of the converted model, to float rounding
    assert traces == pytest.approx(tfmpq.sensitivity(converted, train, num_probes=2, num_samples=64, seed=0),
                                   rel=1e-4)
    assert tfmpq.omega_table(model, traces, bits=(4, 8)) == tfmpq.omega_table(converted, traces, bits=(4, 8))
    u8 = tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, 8))["weight_bytes"]
    result = ilp(model, train, val, evaluation="ptq", budget="weight_bytes", target=u8, bits=(4, 8), solutions=1,
                 sensitivity=traces, verbose=0)
    assert result.best.ok and result.best.weight_bytes <= u8


def test_zoo_resolves_keras3_models_and_files(digits_k3, tmp_path):
    model, (x, _), _ = digits_k3
    assert zoo.resolve_model(model) is convert.as_tf_keras(model)
    for name in ("k3.keras", "k3.h5"):
        path = tmp_path / name
        model.save(path)
        assert convert.keras3_file_version(path) == keras3.__version__
        loaded = zoo.resolve_model(str(path))
        assert isinstance(loaded, keras.Model) and loaded.name == "digits_k3"
        _assert_same_outputs(model(x[:8]), loaded(x[:8]), model)


def test_tf_keras_files_are_not_taken_for_keras3(tmp_path):
    model = build_sequential(keras)
    for name in ("k2.keras", "k2.h5"):
        model.save(tmp_path / name)
        assert convert.keras3_file_version(tmp_path / name) is None


def test_unreadable_keras3_file_is_a_model_load_error(tmp_path):
    path = tmp_path / "k3.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.5.0"}))
        z.writestr("config.json", "{}")
    with pytest.raises(ModelLoadError, match=rf"Cannot load .*k3.keras with Keras {keras3.__version__}, which "
                                             r"saved it"):
        zoo.resolve_model(str(path))


# --------------------------------------------------------------------------------------------------
# The command line, on a Keras 3 file: in this process and as a user runs it.


@pytest.fixture(scope="module")
def digits_k3_file(digits_k3, tmp_path_factory):
    path = tmp_path_factory.mktemp("k3file") / "model.keras"
    digits_k3[0].save(path)
    return path


def test_cli_info_of_a_keras3_file(digits_k3_file, capsys):
    from tfmpq import cli

    assert cli.main(["info", str(digits_k3_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # conv: 3x3x1x8 kernel + 8 folded biases, 8x8x8 outputs x 9 MACs; head: 512x10 + 10; + 32 BN weights.
    assert lines[0] == "model `digits_k3`: input (8, 8, 1), 5,234 parameters, 2 quantizable groups, 9,728 MACs"
    assert lines[2].split() == ["0", "conv", "Conv2D", "conv_bn+conv_relu", "80", "4,608"]
    assert lines[3].split() == ["1", "head", "Dense", "-", "5,130", "5,120"]


@pytest.mark.slow
def test_cli_quantize_of_a_keras3_file(digits_k3_file, tmp_path):
    from tfmpq import cli

    code = cli.main(["quantize", str(digits_k3_file), "--bits", "8", "--data", "digits", "--epochs", "1",
                     "--num-train", "256", "--num-test", "100", "-o", str(tmp_path / "q")])
    assert code == 0 and (tmp_path / "q" / "qat.h5").is_file()


def _fresh_python(args, cwd, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_USE_LEGACY_KERAS", None)  # as in a new notebook or shell
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=str(cwd))


@pytest.mark.slow
def test_tfmpq_info_of_a_keras3_file_in_a_fresh_process(tmp_path):
    model = build_functional(keras3)
    path = tmp_path / "model.keras"
    model.save(path)
    done = _fresh_python(["-m", "tfmpq", "info", str(path)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "model `k3_functional`: input (16, 16, 3)" in done.stdout
    assert "5 quantizable groups" in done.stdout


# --------------------------------------------------------------------------------------------------
# A notebook's import order: Keras 3 first, tfmpq after the model is trained (fresh processes).


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--tf-keras-first"]], ids=["keras3", "tf.keras-touched-first"])
def test_keras3_model_trained_first_exports_with_its_accuracy(tmp_path, flags):
    done = _fresh_python([os.path.join(ROOT, "tests", "keras3_notebook_order.py"), str(tmp_path)] + flags, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["groups"] == ["conv", "fc", "head"]
    assert result["keras3_accuracy"] > 0.9  # the model learned: the comparison below means something
    # 8 bits: within 1 percentage point of the Keras 3 model (4 of the 397 test images).
    assert abs(result["litert_accuracy"] - result["keras3_accuracy"]) <= 0.01


# --------------------------------------------------------------------------------------------------
# Keras Applications built by Keras 3: the same groups as the tf_keras build, the same outputs.

APPLICATIONS = [
    pytest.param("MobileNet", dict(alpha=0.25), id="MobileNet"),
    pytest.param("MobileNetV2", dict(alpha=0.35), id="MobileNetV2", marks=pytest.mark.slow),
    pytest.param("ResNet50", {}, id="ResNet50", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,options", APPLICATIONS)
def test_keras_applications_convert_to_the_tf_keras_build(name, options):
    def build(k):
        return getattr(k.applications, name)(input_shape=(32, 32, 3), weights=None, classes=10,
                                             classifier_activation=None, **options)

    k3_model = _randomize(build(keras3))
    converted = convert.as_tf_keras(k3_model)
    reference = convert.flatten_model(build(keras))  # what tfmpq works on: SeparableConv2D split (issue 27)
    groups = tfmpq.quantizable_groups(k3_model)
    assert groups == tfmpq.quantizable_groups(reference)  # names, kinds, folded layers, sizes, MACs
    assert tfmpq.float_layers(k3_model) == tfmpq.float_layers(reference)
    assert len(groups) == {"MobileNet": 28, "MobileNetV2": 53, "ResNet50": 54}[name]
    reference.set_weights(converted.get_weights())
    x = _x(k3_model, n=4)
    expected = np.asarray(k3_model(x, training=False))
    _assert_same_outputs(expected, converted(x, training=False), k3_model)
    _assert_same_outputs(expected, reference(x, training=False), k3_model)
