"""Channel-wise bits (issue 25): the policy, its costs, and QAT / PTQ / variable-bit / one-shot models.

Real small models (tests/models_for_tests.py) on scikit-learn's digits, seeded. Export: tests/export/test_channel_export.py.
"""
import dataclasses
import json

import numpy as np
import pytest

import tfmpq
from tfmpq import QuantPolicy
from tfmpq._keras import keras, tf
from tfmpq.metrics import group_flash_bytes, pruned_inputs, summary
from tfmpq.policy import bits_label, channel_bits, channel_segments
from tfmpq.quantize import VariableBitModel, group_layers, oneshot

from models_for_tests import build_cnn

# build_cnn: conv1 (Conv2D 16), dw (DepthwiseConv2D 16), conv2 (Conv2D 16, stride 2), logits (Dense 10 after Flatten)
MIXED = [[2] * 8 + [4] * 8, [3, 8] * 8, [8] * 4 + [5] * 12, 8]


@pytest.fixture(scope="module")
def cnn():
    return build_cnn()


# ---- policy --------------------------------------------------------------------------------------------


def test_per_channel_bits_round_trip_and_hash(cnn):
    p = QuantPolicy.from_bits(cnn, weight_bits=MIXED, activation_bits=8)
    assert p.weight_bits[0] == (2,) * 8 + (4,) * 8 and p.weight_bits[3] == 8 and p.is_channel_wise
    assert p.genes == p.weight_bits and QuantPolicy.from_genes(cnn, p.genes) == p
    q = QuantPolicy.from_json(p.to_json())
    assert q == p and hash(q) == hash(p) and len({p, q}) == 1
    assert json.loads(p.to_json())["weight_bits"][1] == [3, 8] * 8
    # an int still means the whole group, and one width over every channel *is* that int
    assert QuantPolicy.from_bits(cnn, [[4] * 16, 8, 8, 8]) == QuantPolicy.from_bits(cnn, [4, 8, 8, 8])
    assert not QuantPolicy.from_bits(cnn, [[4] * 16, 8, 8, 8]).is_channel_wise
    # JSON written before channel-wise bits (no signature, ints only) still loads
    old = QuantPolicy.from_json('{"groups": ["conv1", "dw", "conv2", "logits"], "weight_bits": [8, 4, 4, 8], '
                                '"activation_bits": [8, 8, 8, 8]}')
    assert old.genes == (8, 4, 4, 8)
    assert p.replace(conv1=[4] * 15 + [2]).weight_bits[0] == (4,) * 15 + (2,)
    assert bits_label(p.weight_bits[2]) == "5x12+8x4" and "conv1=2x8+4x8/8" in str(p)
    assert channel_segments((4, 2, 0, 2), 4) == [(2, (1, 3)), (4, (0,))]


def test_wrong_channel_count_names_the_group_and_its_channels(cnn):
    with pytest.raises(ValueError, match=r"group `dw` has 16 output channels.*need 16 values\. Received 15"):
        QuantPolicy.from_bits(cnn, weight_bits=[8, [4] * 15, 8, 8])
    # a policy read from JSON is checked when it meets the model
    text = QuantPolicy.from_bits(cnn, weight_bits=MIXED).to_json().replace("[3, 8, 3, 8", "[3, 8, 8", 1)
    stray = QuantPolicy.from_json(text)
    with pytest.raises(ValueError, match=r"group `dw` has 16 output channels.*Received 15"):
        tfmpq.quantize_model(cnn, stray)
    with pytest.raises(ValueError, match=r"group `dw` has 16 output channels"):
        summary(cnn, stray)


def test_pruning_only_where_allowed(cnn):
    bits = [8, [4] * 12 + [0] * 4, 8, 8]
    with pytest.raises(ValueError, match=r"0 \(a pruned channel\).*group `dw`.*allow_pruning=True"):
        QuantPolicy.from_bits(cnn, weight_bits=bits)
    p = QuantPolicy.from_bits(cnn, weight_bits=bits, allow_pruning=True)
    assert p.weight_bits[1].count(0) == 4 and QuantPolicy.from_json(p.to_json()) == p
    with pytest.raises(ValueError, match=r"group `dw` must keep at least one channel"):
        QuantPolicy.from_bits(cnn, weight_bits=[8, [0] * 16, 8, 8], allow_pruning=True)
    for bad in (16, 1, 9):  # float is a whole group's choice; 1 and 9 are no width
        with pytest.raises(ValueError, match=r"expected per-channel bit-widths in 2\.\.8.*group `conv2`"):
            QuantPolicy.from_bits(cnn, weight_bits=[8, 8, [4] * 15 + [bad], 8], allow_pruning=True)
    with pytest.raises(ValueError, match=r"per_channel=True"):
        tfmpq.quantize_model(cnn, QuantPolicy.from_bits(cnn, MIXED), per_channel=False)


# ---- costs ---------------------------------------------------------------------------------------------


def test_costs_are_counted_per_channel(cnn):
    groups = tfmpq.quantizable_groups(cnn)
    conv2 = groups[2]
    p = QuantPolicy.from_bits(cnn, weight_bits=[8, 8, [2] * 8 + [4] * 8, 8], activation_bits=8)
    s = summary(cnn, p)
    g = s["groups"][2]
    per_channel = conv2.kernel_params // 16  # 3 x 3 x 16
    assert g["weight_bytes"] == per_channel * (8 * 2 + 8 * 4) / 8 + 16 * 4 + 16 * 8
    assert g["channels"] == [[2, 8], [4, 8]] and g["pruned"] == 0
    # BOPs: each channel's MACs at its own width, times the 8-bit tensor fed in
    uniform = summary(cnn, QuantPolicy.from_bits(cnn, [8, 8, 8, 8]))
    assert s["bops"] == uniform["bops"] - conv2.macs * 8 * 8 + conv2.macs // 16 * (8 * 2 + 8 * 4) * 8
    assert s["avg_weight_bits"] == pytest.approx(
        (uniform["avg_weight_bits"] * 5152 - conv2.kernel_params * 8 + per_channel * 48) / 5152)
    # flash: one sub-tensor per width, each as a group of that many channels would be stored
    half = dataclasses.replace(conv2, kernel_params=per_channel * 8, params=per_channel * 8 + 8, out_channels=8,
                               macs=conv2.macs // 2)
    for packing in ("int8", "int4", "lut"):
        parts = [group_flash_bytes(half, w, packing) for w in (2, 4)]
        assert summary(cnn, p, packing=packing)["groups"][2]["flash_bytes"] == sum(b for _, b in parts), packing
        assert summary(cnn, p, packing=packing)["groups"][2]["storage"] == "+".join(st for st, _ in parts)
    assert s["groups"][2]["storage"] == "int4+int4"


def test_pruned_channels_cost_nothing_and_remove_the_rows_they_feed(cnn):
    groups = tfmpq.quantizable_groups(cnn)
    p = QuantPolicy.from_bits(cnn, weight_bits=[8, 8, [4] * 12 + [0] * 4, 8], activation_bits=8, allow_pruning=True)
    s = summary(cnn, p, packing="int8")
    conv2, logits = s["groups"][2], s["groups"][3]
    assert conv2["pruned"] == 4 and conv2["weight_bytes"] == 144 * 12 * 4 / 8 + 12 * 4 + 12 * 8
    assert logits["weight_bytes"] == 2560 * 12 // 16 + 10 * 4 + 10 * 8  # Flatten (4 x 4 x 16) -> 10: 1920 rows left
    assert logits["flash_bytes"] == 1920 + 10 * 4 + 10 * 24
    assert conv2["flash_bytes"] == 144 * 12 + 12 * 4 + 12 * 24
    full = summary(cnn, QuantPolicy.from_bits(cnn, [8, 8, 4, 8]))
    assert s["macs"] == full["macs"] - groups[2].macs // 4 - groups[3].macs // 4
    kept_bits = 144 * 8 + 144 * 8 + 144 * 12 * 4 + 1920 * 8
    assert s["avg_weight_bits"] == pytest.approx(kept_bits / (144 + 144 + 2304 + 2560))  # pruned weights: 0 bits


# ---- QAT, PTQ, variable bits, one-shot -----------------------------------------------------------------


def _levels(kernel: np.ndarray, kind: str) -> list[int]:
    flat = kernel.reshape(-1, kernel.shape[-2] * kernel.shape[-1]) if kind == "DepthwiseConv2D" else \
        kernel.reshape(-1, kernel.shape[-1])
    return [np.unique(flat[:, c]).size for c in range(flat.shape[1])]


def test_each_channel_is_quantized_at_its_width_as_a_per_layer_group_would_be(cnn):
    """Channel c of a channel-wise group = channel c of the per-layer group at c's width (same weights)."""
    p = QuantPolicy.from_bits(cnn, weight_bits=MIXED, activation_bits=8)
    mixed = group_layers(tfmpq.quantize_model(cnn, p))
    for width in (2, 3, 4, 5, 8):
        uniform = group_layers(tfmpq.quantize_model(cnn, QuantPolicy.uniform(cnn, width, 8)))
        for name, layer in mixed.items():
            bits = np.asarray(layer.channel_bits())
            kernel, bias = layer.deployed_weights()
            ref_kernel, ref_bias = uniform[name].deployed_weights()
            at = bits == width
            if layer.kind == "DepthwiseConv2D":
                kernel, ref_kernel = kernel.reshape(3, 3, -1), ref_kernel.reshape(3, 3, -1)
            np.testing.assert_array_equal(kernel[..., at], ref_kernel[..., at])
            np.testing.assert_array_equal(bias, ref_bias)  # BN folding does not depend on the bits
    for name, layer in mixed.items():
        kernel, _ = layer.deployed_weights()
        assert all(n <= 2 ** b - 1 for n, b in zip(_levels(kernel, layer.kind), layer.channel_bits())), name


def test_pruned_channels_output_exactly_zero_in_training_and_inference(cnn, digits):
    (x, y), _ = digits
    p = QuantPolicy.from_bits(cnn, weight_bits=[[4, 0] * 8, [0] * 4 + [4] * 12, 8, [8] * 9 + [0]],
                              allow_pruning=True)
    for fold in ("one_conv", "two_conv"):
        qat = tfmpq.quantize_model(cnn, p, bn_fold=fold)
        qat.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        qat.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
        for name, pruned in (("conv1", slice(1, None, 2)), ("dw", slice(0, 4))):
            out = keras.Model(qat.input, qat.get_layer(f"quant_{name}").output)
            for training in (True, False):
                assert np.abs(out(x[:64], training=training).numpy()[..., pruned]).max() == 0.0, (fold, name)
        logits = keras.Model(qat.input, qat.get_layer("quant_logits").output)(x[:64], training=False).numpy()
        assert np.abs(logits[:, 9]).max() == 0.0
        for layer in group_layers(qat).values():
            kernel, bias = layer.deployed_weights()
            dead = np.asarray(layer.channel_bits()) == 0
            assert np.all(bias[dead] == 0) and np.all(kernel.reshape(-1, dead.size)[:, dead] == 0)
        # conv2's rows that multiply dw's pruned channels: zeros, and off its grid (export removes them)
        kernel, _ = group_layers(qat)["conv2"].deployed_weights()
        assert np.all(kernel[:, :, :4, :] == 0) and np.all(np.abs(kernel[:, :, 4:, :]).max(axis=(0, 1, 2)) > 0)


def _compile(m):
    m.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])


def test_variable_bit_model_takes_channel_bits_without_a_rebuild(cnn, digits):
    """The trap: the model is traced (fit, predict) on a per-layer policy, then given channel-wise bits."""
    (x, y), (xt, _) = digits
    keras.utils.set_random_seed(0)
    vbm = VariableBitModel(cnn)
    _compile(vbm.model)
    vbm.set_policy(QuantPolicy.uniform(cnn, 8, 8))
    vbm.model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    vbm.model.predict(xt[:64], verbose=0)
    train_function, predict_function = vbm.model.train_function, vbm.model.predict_function
    p = QuantPolicy.from_bits(cnn, weight_bits=[[2, 8] * 8, [0] * 2 + [3] * 14, [4] * 8 + [6] * 8, 8],
                              allow_pruning=True)
    vbm.set_policy(p)
    vbm.reset()
    assert tfmpq.policy_of(vbm.model)["dw"]["weight_bits"] == p.weight_bits[1]
    static = tfmpq.quantize_model(cnn, p)
    static.set_weights(vbm.model.get_weights())
    np.testing.assert_array_equal(vbm.model.predict(xt[:64], verbose=0), static.predict(xt[:64], verbose=0))
    vbm.model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    assert vbm.model.train_function is train_function and vbm.model.predict_function is predict_function
    for name, layer in group_layers(vbm.model).items():  # trained at the new widths, not the traced ones
        kernel, bias = layer.deployed_weights()
        bits = layer.channel_bits()
        assert all(n <= 2 ** b - 1 for n, b in zip(_levels(kernel, layer.kind), bits) if b), name
        assert all(bias[c] == 0 for c, b in enumerate(bits) if b == 0), name
    conv1_levels = _levels(group_layers(vbm.model)["conv1"].deployed_weights()[0], "Conv2D")
    assert max(conv1_levels[0::2]) <= 3 < max(conv1_levels[1::2])  # 2-bit and 8-bit channels side by side


def test_one_shot_model_takes_channel_bits(cnn, digits):
    (x, y), (xt, _) = digits
    keras.utils.set_random_seed(0)
    vbm = VariableBitModel(cnn)
    p = QuantPolicy.from_bits(cnn, weight_bits=[[2, 8] * 8, [3] * 8 + [5] * 8, [4] * 12 + [0] * 4, [8] * 5 + [4] * 5],
                              allow_pruning=True)
    row = oneshot.bit_values(vbm, p)
    assert row.size == sum(int(np.prod(v.shape.as_list())) for v in vbm._bit_variables())
    data = lambda: tf.data.Dataset.from_tensor_slices((x[:256], y[:256])).batch(64)  # noqa: E731
    info = oneshot.train_shared(vbm, data, epochs=1, optimizer=keras.optimizers.Adam(1e-3),
                                loss="sparse_categorical_crossentropy", weight_choices=(2, 4, 8),
                                activation_choices=(8,), num_random=1)
    assert info["steps"] == 4 and np.isfinite(info["loss"][0])
    assert tfmpq.policy_of(vbm.model)["conv1"]["weight_bits"] == 8  # the bits before training are restored
    vbm.set_policy(p)
    oneshot.recalibrate(vbm, x[:256], 64)
    scored = oneshot.inference_forward(vbm)(xt[:64]).numpy()
    static = tfmpq.quantize_model(cnn, p)
    static.set_weights(vbm.model.get_weights())
    rows = pruned_inputs(tfmpq.quantizable_groups(cnn), p.weight_bits)
    assert list(rows) == ["logits"] and rows["logits"][1] == (True,) * 12 + (False,) * 4  # conv2 -> Flatten -> logits
    for name, layer in group_layers(static).items():  # the bits from the policy, not from the shared model
        layer.channel_bits_var.assign(np.asarray(channel_bits(p.bits_of(name)[0], layer.out_channels), np.float32))
        layer.assign_input_keep(rows[name][1] if name in rows else None)
    np.testing.assert_array_equal(scored, static(xt[:64], training=False).numpy())
    vbm.set_policy(QuantPolicy.uniform(cnn, 8, 8))  # the bits do reach the traced scoring function
    assert not np.array_equal(scored, oneshot.inference_forward(vbm)(xt[:64]).numpy())


def test_ptq_evaluator_scores_a_channel_wise_policy(cnn, digits):
    from tfmpq.evaluate import Evaluator

    train, val = digits
    ev = Evaluator(cnn, train, val, evaluation="ptq", batch_size=64, seed=0)
    p = QuantPolicy.from_bits(cnn, weight_bits=MIXED)
    candidate = ev.evaluate(p)
    static = tfmpq.quantize_model(cnn, p)
    tfmpq.calibrate(static, ev.representative_data(), batch_size=64)
    hits = np.argmax(static.predict(val[0], verbose=0), -1) == val[1]
    assert candidate.ok and candidate.accuracy == pytest.approx(hits.mean())
    assert candidate.metrics["groups"][0]["channels"] == [[2, 8], [4, 8]]


# ---- per-channel statistics (the order a channel-wise search will cluster channels by) -----------------


def test_channel_statistics_add_up_to_the_groups_and_follow_the_policy_channel_order(digits):
    from tfmpq.hessian import channel_quantization_error, hessian_trace, quantization_error

    from models_for_tests import randomize_bn

    (x, y), _ = digits
    keras.utils.set_random_seed(4)
    i = keras.layers.Input((8, 8, 1))
    h = keras.layers.BatchNormalization(name="c_bn")(keras.layers.Conv2D(3, 3, name="c")(i))
    h = keras.layers.BatchNormalization(name="d_bn")(keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="d")(h))
    model = randomize_bn(keras.Model(i, keras.layers.Dense(10, name="head")(keras.layers.Flatten()(h))), seed=4)
    errors = channel_quantization_error(model, bits=(2, 4))
    totals = quantization_error(model, bits=(2, 4))
    qat = group_layers(tfmpq.quantize_model(model, QuantPolicy.uniform(model, 2, 8)))
    for name, layer in qat.items():
        assert errors[name][4].sum() == pytest.approx(totals[name][4], rel=1e-9)
        kernel, _ = layer.folded()
        deployed, _ = layer.deployed_weights()
        diff = (deployed - kernel.numpy()).astype(np.float64)
        per_channel = (diff.reshape(-1, layer.out_channels) if layer.kind != "DepthwiseConv2D" else
                       diff.reshape(-1, diff.shape[-2] * diff.shape[-1]))
        np.testing.assert_allclose(errors[name][2], np.sum(per_channel ** 2, axis=0), rtol=1e-5)
    est = hessian_trace(model, (x[:64], y[:64]), num_probes=4, num_samples=None, batch_size=64, seed=0)
    for name in est.groups:
        assert est.channel_trace[name].shape == (qat[name].out_channels,)
        assert est.channel_trace[name].sum() == pytest.approx(est.trace[name], rel=1e-9, abs=1e-12)


def test_a_saved_channel_wise_qat_model_loads_with_its_bits(cnn, tmp_path):
    p = QuantPolicy.from_bits(cnn, weight_bits=[[2, 8] * 8, [0] * 2 + [3] * 14, 4, 8], allow_pruning=True)
    qat = tfmpq.quantize_model(cnn, p)
    qat.save(tmp_path / "qat.h5", include_optimizer=False)  # what `tfmpq quantize` writes
    with tfmpq.quantize_scope():
        loaded = keras.models.load_model(tmp_path / "qat.h5", compile=False)
    bits = {name: v["weight_bits"] for name, v in tfmpq.policy_of(loaded).items()}
    assert bits == dict(zip(p.group_names, p.weight_bits))
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), qat(x, training=False).numpy())
    from tfmpq.export.models import member_file_name

    assert member_file_name(3, p.genes) == "03_2x8+8x8-0x2+3x14-4-8" and member_file_name(0, (8, 4)) == "00_8-4"
