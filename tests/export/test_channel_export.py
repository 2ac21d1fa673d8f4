"""Export of channel-wise bits (issue 25): one filter tensor per width, channel orders folded or restored.

Checked on the written file: LiteRT == TFLite Micro bit for bit, each channel's levels counted in the
flatbuffer, the weights' bytes equal ``metrics.summary``'s flash metrics, the arena reported. Default:
the digits CNN (tests/export/conftest.py); slow: the zoo's Fashion-MNIST models on 2,000 test images.
"""
import numpy as np
import pytest

import tfmpq
from tfmpq import QuantPolicy, metrics
from tfmpq._keras import keras
from tfmpq.errors import ExportError
from tfmpq.export import export_tflite, run_tflite, weight_storage
from tfmpq.export.channels import channel_plan, gather_pieces
from tfmpq.export.flatbuffer import output_channel_axis, weight_tensors
from tfmpq.policy import PRUNED
from tfmpq.quantize import group_layers, policy_of

from export_helpers import compile_model, copy_model

L = keras.layers
# build_cnn: conv1 (Conv2D 16) -> dw (DepthwiseConv2D 16) -> conv2 (Conv2D 16, stride 2) -> Flatten -> logits (10)
MIXED = [[4, 2] * 8,                # widths interleaved: conv1's output is permuted, folded into dw
         [3, 8, 0, 5] * 4,          # three widths and 4 pruned channels: dw splits its input by width
         [8] * 4 + [2] * 12,        # contiguous widths
         [8] * 9 + [4]]             # the model's output: its order is restored


def _qat(float_cnn, bits, x, y, epochs=1):
    model = copy_model(float_cnn)
    policy = QuantPolicy.from_bits(model, weight_bits=bits, activation_bits=8, allow_pruning=True)
    qat = tfmpq.quantize_model(model, policy)
    compile_model(qat, 1e-3)
    keras.utils.set_random_seed(1)
    if epochs:
        qat.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    else:
        tfmpq.calibrate(qat, x[:256])
    return model, policy, qat


@pytest.fixture(scope="module")
def mixed(float_cnn, digits):
    (x, y), _ = digits
    return _qat(float_cnn, MIXED, x, y)


def test_gather_pieces():
    assert gather_pieces([5, 6, 7, 1], [1, 9, 5, 6]) == [["slice", 3, 4], ["zeros", 1], ["slice", 0, 2]]
    assert gather_pieces(range(4), range(4)) == [["slice", 0, 4]]
    assert gather_pieces([2, 3], [0, 1]) == [["zeros", 2]]


def test_plan_folds_each_order_into_the_consumers_and_restores_the_output(mixed):
    _, _, qat = mixed
    plans = {p.group: p for p in channel_plan(qat, {f"quant_{n}": g for n, g in group_layers(qat).items()},
                                               {n: v["weight_bits"] for n, v in policy_of(qat).items()}).values()}
    conv1, dw, conv2, logits = (plans[n] for n in ("conv1", "dw", "conv2", "logits"))
    assert [(w, sorted(c)) for w, c in conv1.segments] == [(2, list(range(1, 16, 2))), (4, list(range(0, 16, 2)))]
    for _, chans in conv1.segments:  # inside a sub-layer, channels come by the width dw gives them
        assert [dw.bits[c] for c in chans] == sorted(dw.bits[c] for c in chans)
    assert conv1.restore is None and conv1.output_order == [c for _, chans in conv1.segments for c in chans]
    assert dw.input_order == conv1.output_order and len(dw.segment_inputs) == 3  # 3, 5 and 8 bits
    assert all(len(pieces) <= 2 for pieces in dw.segment_inputs)  # one slice per width of conv1, no more
    assert [w for w, _ in dw.segments] == [3, 5, 8] and PRUNED not in [dw.bits[c] for c in dw.output_order]
    assert conv2.rows == dw.output_order and conv2.input_gather is None  # folded: no data movement
    assert conv2.restore is None and conv2.output_order == list(range(4, 16)) + list(range(4))
    assert logits.input_spatial == 16 and logits.rows == conv2.output_order  # through the Flatten
    assert logits.restore is not None and logits.output_order == list(range(10))


def _channel_levels(path) -> dict:
    """tensor name -> distinct stored values per output channel, read from the flatbuffer (INT4 unpacked)."""
    out = {}
    for w in weight_tensors(path):
        if w.values is None:  # a DECODE output (LUT): the report's count of the int8 file stands for it
            continue
        values = np.moveaxis(w.values, output_channel_axis(w), 0)
        out[w.name] = (w.type, [np.unique(c).size for c in values])
    return out


def _check_export(report, policy, model, x, packing):
    """The file holds each channel at its width, its weight bytes are `summary`'s, the runtimes agree."""
    levels = _channel_levels(report.path)
    groups = {g.name: g for g in tfmpq.quantizable_groups(model)}
    for g in report.groups:
        bits = g["weight_bits"]
        segments = g.get("segments") or [dict(g, channels=list(range(groups[g["name"]].out_channels)))]
        kept = [c for s in segments for c in s["channels"]]
        assert sorted(kept) == [c for c in range(groups[g["name"]].out_channels)
                                if not isinstance(bits, tuple) or bits[c] != PRUNED], g["name"]  # pruned: gone
        for s in segments:
            width = s["weight_bits"]
            kind, counts = levels.get(s["tensor"], ("LUT", [s["max_levels_per_channel"]] * len(s["channels"])))
            assert all(bits[c] == width for c in s["channels"]) if isinstance(bits, tuple) else width == bits
            assert len(counts) == len(s["channels"]) and max(counts) <= 2 ** width - 1, (g["name"], width, counts)
            if packing in ("int4", "auto") and width <= 4:
                assert kind == "INT4" and s["storage"] == "int4"
    summary = metrics.summary(model, policy, packing=packing)
    stored = {w.name: w for w in weight_storage(report.path)}
    in_file = sum(stored[s["tensor"]].total_bytes for g in report.groups for s in (g.get("segments") or [g]))
    assert in_file == report.flash_bytes
    if packing in ("int8", "int4"):
        assert report.flash_bytes == summary["flash_bytes"], packing
    else:  # LUT tables: summary counts min(2^b - 1, weights per channel) entries, the file its fullest channel
        slack = 0
        for g in report.groups:
            for s in g.get("segments") or [g]:
                if s["storage"] == "lut":
                    per_channel = groups[g["name"]].kernel_params // groups[g["name"]].out_channels
                    bound = min(2 ** s["weight_bits"] - 1, per_channel)
                    slack += len(s.get("channels") or range(groups[g["name"]].out_channels)) * (
                        bound - s["max_levels_per_channel"])
        assert report.flash_bytes == summary["flash_bytes"] - slack, packing
    assert [g["storage"] for g in report.groups] == [g["storage"] for g in summary["groups"]]
    assert report.arena_bytes and report.arena_bytes > 0
    if "litert" in report.runtimes:
        np.testing.assert_array_equal(run_tflite(report.path, x, "litert"), run_tflite(report.path, x, "tflm"))


def test_channel_wise_export_at_each_width(mixed, digits, tmp_path):
    _, (xt, yt) = digits
    model, policy, qat = mixed
    for packing in ("int8", "int4", "lut", "auto"):
        report = export_tflite(qat, tmp_path / f"{packing}.tflite", representative_data=xt[:200], packed=packing)
        _check_export(report, policy, model, xt, packing)
        if packing == "int4":
            dw = next(g for g in report.groups if g["name"] == "dw")
            assert [s["weight_bits"] for s in dw["segments"]] == [3, 5, 8] and dw["storage"] == "int4+int8+int8"
            assert report.operators.count("DEPTHWISE_CONV_2D") == 3
            # the QAT model and the file agree image by image (rounding of the requantization aside)
            keras_top = qat.predict(xt, verbose=0).argmax(-1)
            lite_top = run_tflite(report.path, xt, "litert").argmax(-1)
            assert np.mean(keras_top == lite_top) >= 0.98
            assert abs(np.mean(keras_top == yt) - np.mean(lite_top == yt)) <= 0.02
    assert "0x4+3x4+5x4+8x4" in str(report)  # dw's widths, pruned channels as width 0


def test_contiguous_widths_need_only_a_concatenation(float_cnn, digits, tmp_path):
    (x, y), (xt, _) = digits
    model, policy, qat = _qat(float_cnn, [[2] * 8 + [4] * 8, 8, 8, 8], x, y, epochs=0)
    report = export_tflite(qat, tmp_path / "c.tflite", representative_data=xt[:200], packed="int4")
    assert "STRIDED_SLICE" not in report.operators and report.operators.count("CONCATENATION") == 1
    assert report.groups[0]["storage"] == "int4+int4"
    _check_export(report, policy, model, xt, "int4")


def test_refused_where_channels_cannot_be_removed_or_split(digits, tmp_path):
    (x, _), _ = digits
    keras.utils.set_random_seed(0)
    i = L.Input((8, 8, 1))
    h = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw2")(L.Conv2D(4, 1, name="pw")(i))
    model = keras.Model(i, L.Dense(3, name="out")(L.Flatten()(h)))
    policy = QuantPolicy.from_bits(model, weight_bits=[8, [4, 8] * 4, 8])
    qat = tfmpq.quantize_model(model, policy)
    tfmpq.calibrate(qat, x[:64])
    with pytest.raises(ExportError, match=r"depth_multiplier 2.*input channel 0 has \[4, 8\]"):
        export_tflite(qat, tmp_path / "m.tflite", representative_data=x[:32])
    # a pruned conv whose channels reach the Dense through a Permute: metrics removes their rows, export cannot
    i = L.Input((8, 8, 1))
    h = L.Permute((3, 1, 2), name="channels_first")(L.Conv2D(4, 3, name="conv")(i))
    model = keras.Model(i, L.Dense(3, name="out")(L.Flatten()(h)))
    policy = QuantPolicy.from_bits(model, weight_bits=[[4, 4, 4, 0], 8], allow_pruning=True)
    qat = tfmpq.quantize_model(model, policy)
    tfmpq.calibrate(qat, x[:64])
    with pytest.raises(ExportError, match=r"group `out`.*`conv`.*1 pruned channel.*Permute"):
        export_tflite(qat, tmp_path / "p.tflite", representative_data=x[:32])
    assert not (tmp_path / "p.tflite").exists()


def _fmnist_channel_policy(model):
    """Per channel, by the channels' 3-bit quantization error: the largest quarter at 8 bits, the middle half
    at 4, the smallest quarter at 2 (every group but the first, at 8); in the middle groups the eighth of the
    channels with the smallest kernel norm pruned (bench.channel_export's ``channel+prune``)."""
    from tfmpq.hessian import channel_quantization_error, folded_kernels

    groups = tfmpq.quantizable_groups(model)
    errors, kernels = channel_quantization_error(model, bits=(3,)), folded_kernels(model)
    bits = [8]
    for i, g in enumerate(groups[1:], start=1):
        order, n = np.argsort(-errors[g.name][3], kind="stable"), g.out_channels
        widths = np.full(n, 4)
        widths[order[:n // 4]], widths[order[n - n // 4:]] = 8, 2
        if i < len(groups) - 1:
            k = kernels[g.name]
            norms = np.sum((k.reshape(-1, n)).astype(np.float64) ** 2, axis=0)
            widths[np.argsort(norms, kind="stable")[:n // 8]] = 0
        bits.append([int(b) for b in widths])
    return QuantPolicy.from_bits(model, weight_bits=bits, activation_bits=8, allow_pruning=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["small_cnn_fmnist", "dscnn_fmnist"])
def test_fashion_mnist_channel_wise_export_keeps_the_trained_accuracy(name, tmp_path):
    """Real data: Keras QAT vs LiteRT within 0.3 pp on the 2,000 test images, LiteRT == TFLite Micro."""
    from tfmpq import data, zoo
    from tfmpq.accuracy import model_accuracy

    roles = data.roles(data.load("default"))
    model = zoo.resolve_model(f"zoo:{name}")
    policy = _fmnist_channel_policy(model)
    keras.utils.set_random_seed(0)
    qat = tfmpq.quantize_model(model, policy)
    qat.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    qat.fit(*roles.train, epochs=1, batch_size=64, verbose=0)
    x, y = roles.test
    keras_acc = model_accuracy(qat, x, y)
    assert keras_acc > 0.8, keras_acc  # a channel-wise policy that still classifies (float: 88-92%)
    for packing in ("int4", "auto"):
        report = export_tflite(qat, tmp_path / f"{packing}.tflite", representative_data=roles.train[0][:256],
                               packed=packing)
        _check_export(report, policy, model, x[:500], packing)
        tflm = run_tflite(report.path, x, "tflm")
        if "litert" in report.runtimes:
            litert = run_tflite(report.path, x, "litert")
            np.testing.assert_array_equal(litert, tflm)
        assert abs(np.mean(tflm.argmax(-1) == y) - keras_acc) <= 0.003, (packing, keras_acc)


def test_restore_and_sequential_models(digits, digits_mlp, tmp_path):
    """A group whose output is averaged (not a channel-keeping layer) puts its 24 channels back in place with
    more slices than one CONCATENATION may take on TFLite Micro (10); a Sequential model folds its order."""
    (x, y), (xt, _) = digits
    keras.utils.set_random_seed(0)
    i = L.Input((8, 8, 1))
    h = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(24, 3, activation="relu", name="wide")(i))
    model = keras.Model(i, L.Dense(10, name="out")(h))
    compile_model(model, 3e-3)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    for float_model, bits in ((model, [[2, 4] * 12, 8]), (digits_mlp, [[4, 2, 8, 3] * 8, [8] * 5 + [4] * 5])):
        policy = QuantPolicy.from_bits(float_model, weight_bits=bits, activation_bits=8)
        qat = tfmpq.quantize_model(float_model, policy)
        tfmpq.calibrate(qat, x[:256])
        report = export_tflite(qat, tmp_path / f"{float_model.name}.tflite", representative_data=xt[:64],
                               packed="int4")
        _check_export(report, policy, float_model, xt, "int4")
        keras_out = qat.predict(xt, verbose=0).argmax(-1)
        assert np.mean(keras_out == run_tflite(report.path, xt, "litert").argmax(-1)) >= 0.97
    # hidden's order folded into out's rows; out, the model's output, restored: its two widths, two slices
    assert report.groups[0]["storage"] == "int4+int4+int4+int8" and report.operators.count("STRIDED_SLICE") == 2
