"""packed="lut" on TFLite Micro's DECODE format, packed="auto", and flash_bytes: predicted == written."""
import numpy as np
import pytest

import tfmpq
from tfmpq import metrics
from tfmpq.export import export_tflite, run_tflite, tflm_arena_bytes, weight_storage
from tfmpq.export.flatbuffer import read_model
from tfmpq.export.runtimes import litert_interpreter
from tfmpq.search.pareto import reference_cost

AUTO_BITS = [4, 6, 5, 2]  # conv1: INT4; dw: 144 weights, LUT would grow: int8; conv2: LUT; logits: LUT < INT4


@pytest.fixture(scope="module")
def exports(train_qat, digits, tmp_path_factory):
    """{(bits, packing): report} of calibrated QAT models, exported once per packing."""
    (xt, _), _ = digits
    out = tmp_path_factory.mktemp("packing")
    reports = {}
    for bits, packings in ((AUTO_BITS, ("int8", "int4", "lut", "auto")), ([3, 7, 4, 3], ("auto",))):
        qat = train_qat(bits, epochs=0)
        for packing in packings:
            name = f"{''.join(map(str, bits))}_{packing}.tflite"
            reports[(tuple(bits), packing)] = export_tflite(qat, out / name, representative_data=xt[:200],
                                                            packed=packing)
    return reports


def test_lut_is_tflite_micros_decode_format_identical_to_the_uncompressed_file(exports, digits):
    _, (x, _) = digits
    lut, int8 = exports[(tuple(AUTO_BITS), "lut")], exports[(tuple(AUTO_BITS), "int8")]
    assert lut.storage == {"conv1": "int8", "dw": "int8", "conv2": "lut", "logits": "lut"}
    assert lut.operators.count("CUSTOM:TFLM_DECODE") == 2 and lut.runtimes == ["tflm"]
    fb = read_model(lut.path)
    metadata = {m.name.decode() for m in fb.metadata or []}
    assert "COMPRESSION_METADATA" not in metadata  # the format before DECODE (tflite-micro PR #3654)
    np.testing.assert_array_equal(run_tflite(lut.path, x, "tflm"), run_tflite(int8.path, x, "tflm"))
    # the decoded filters live in the arena: the report gives that scratch
    assert lut.scratch_bytes == lut.arena_bytes - int8.arena_bytes > 0
    assert lut.arena_bytes == tflm_arena_bytes(lut.path, x[:1])
    with pytest.raises((RuntimeError, ValueError)):
        litert_interpreter(lut.path).allocate_tensors()


def test_lut_decode_tensor_layout(exports):
    lut = exports[(tuple(AUTO_BITS), "lut")]
    conv2 = next(g for g in lut.groups if g["name"] == "conv2")
    stored = next(w for w in weight_storage(lut.path) if w.name == conv2["tensor"])
    stride = conv2["max_levels_per_channel"]
    assert stride <= 2**5 - 1
    # 5-bit indices + the 16-byte DECODE header + 16 tables of `stride` int8 values
    assert stored.kernel_bytes == conv2["stored_bytes"] == 2304 * 5 // 8 + 16 + 16 * stride


def test_auto_reports_bits_storage_and_bytes_per_group(exports, digits):
    _, (x, _) = digits
    auto, int8 = exports[(tuple(AUTO_BITS), "auto")], exports[(tuple(AUTO_BITS), "int8")]
    rows = [(g["name"], g["weight_bits"], g["storage"], g["flash_bytes"]) for g in auto.groups]
    assert [r[:3] for r in rows] == [("conv1", 4, "int4"), ("dw", 6, "int8"), ("conv2", 5, "lut"),
                                     ("logits", 2, "lut")]
    assert all(r[3] > 0 for r in rows) and auto.flash_bytes == sum(r[3] for r in rows)
    assert "conv1" in str(auto) and " int4" in str(auto) and "flash" in str(auto)
    assert any("['dw'] stay int8" in n for n in auto.notes)
    # INT4 and DECODE in one file: TFLite Micro runs it, with the int8 file's outputs
    assert auto.runtimes == ["tflm"] and auto.operators.count("CUSTOM:TFLM_DECODE") == 2
    np.testing.assert_array_equal(run_tflite(auto.path, x, "tflm"), run_tflite(int8.path, x, "tflm"))
    # the 2-bit logits: LUT (indices + 10 tables of 3 values) is smaller than INT4 once the file holds LUT anyway
    logits = next(g for g in auto.groups if g["name"] == "logits")
    assert logits["stored_bytes"] == 2560 * 2 // 8 + 16 + 10 * 3 < 2560 // 2
    # no group gets smaller as LUT at 5..7 bits (the 7-bit dw has 144 weights): an INT4 file, LiteRT runs it too
    auto = exports[((3, 7, 4, 3), "auto")]
    assert auto.storage == {"conv1": "int4", "dw": "int8", "conv2": "int4", "logits": "int4"}
    assert auto.runtimes == ["litert", "tflm"]
    np.testing.assert_array_equal(run_tflite(auto.path, x, "litert"), run_tflite(auto.path, x, "tflm"))


def test_flash_bytes_predicted_from_the_policy_equal_the_written_bytes(exports, float_cnn):
    """int8 and INT4 groups: exact. LUT groups: the formula counts tables of min(2^b - 1, weights per
    channel) entries; the file pads them to its fullest channel, so the difference is exactly the
    levels no channel uses, times the number of tables."""
    groups = tfmpq.quantizable_groups(float_cnn)
    num_lut = 0
    for (bits, packing), report in exports.items():
        policy = tfmpq.QuantPolicy.from_bits(float_cnn, weight_bits=list(bits), activation_bits=8)
        s = metrics.summary(float_cnn, policy, packing=packing)
        key = "flash_bytes" if packing == "auto" else f"flash_bytes_{packing}"
        assert metrics.summary(float_cnn, policy)[key] == s["flash_bytes"]
        per_group = [b for _, b in metrics.flash_bytes(groups, list(bits), packing)]
        assert per_group == [g["flash_bytes"] for g in s["groups"]]
        assert [g["storage"] for g in s["groups"]] == [g["storage"] for g in report.groups], (bits, packing)
        for predicted, written, group in zip(s["groups"], report.groups, groups):
            unused = 0
            if written["storage"] == "lut":
                num_lut += 1
                bound = min(2 ** written["weight_bits"] - 1, group.kernel_params // group.out_channels)
                unused = group.out_channels * (bound - written["max_levels_per_channel"])
            assert predicted["flash_bytes"] - written["flash_bytes"] == unused, (bits, packing, group.name)
        assert s["flash_bytes"] >= report.flash_bytes
    assert num_lut >= 3


def test_flash_bytes_track_the_file_size(exports):
    """Independent of tfmpq's byte counting: the files shrink by the flash saved (INT4 rewrites keep the
    converter's layout; each changed buffer may move by at most 3 bytes of 4-byte alignment)."""
    int8, int4 = exports[(tuple(AUTO_BITS), "int8")], exports[(tuple(AUTO_BITS), "int4")]
    changed = sum(g["storage"] == "int4" for g in int4.groups)
    assert changed == 2  # conv1 (4 bits) and logits (2 bits)
    saved_file = int8.file_bytes - int4.file_bytes
    assert abs(saved_file - (int8.flash_bytes - int4.flash_bytes)) <= 3 * changed


def test_lut_flash_formula_is_an_upper_bound_when_a_channel_misses_levels(float_cnn):
    # dw at 7 bits: 9 weights per channel, so at most 9 entries per table; conv2 at 7 bits: 127
    groups = tfmpq.quantizable_groups(float_cnn)
    dw = next(g for g in groups if g.name == "dw")
    assert metrics.flash_bytes([dw], [7], "lut")[0] == ("int8", 144 + 16 * 4 + 16 * 24)  # 126 + 16 + 144 > 144
    assert metrics.lut_kernel_bytes(144, 7, 16, 9) == 126 + 16 + 144
    assert metrics.kernel_bytes("int4", 145) == 73


def test_packing_names_and_reference_cost():
    assert [metrics.packing_name(p) for p in (None, False, True, "int8", "int4", "lut", "auto")] == [
        "int8", "int8", "lut", "int8", "int4", "lut", "auto"]
    with pytest.raises(ValueError, match=r"Invalid value for `packed`: expected one of"):
        metrics.packing_name("int3")
    assert reference_cost("flash_bytes", {"flash_bytes_int8": 6776.0}) == 6776.0
    assert reference_cost("flash_bytes_lut", {"flash_bytes_int8": 6776.0}) == 6776.0


def test_the_evaluator_scores_flash_bytes(float_cnn, digits):
    (xt, yt), (x, y) = digits
    ev = tfmpq.search.Evaluator(float_cnn, (xt[:100], yt[:100]), (x, y), evaluation="ptq")
    m = ev.metrics(tfmpq.QuantPolicy.from_bits(float_cnn, weight_bits=[8, 4, 4, 2]))
    assert m["flash_bytes"] == m["flash_bytes_int4"] < m["flash_bytes_int8"]
    assert m["flash_bytes_lut"] < m["flash_bytes_int4"]  # 2-bit logits: 10 tables of 3 values beat INT4
    assert "flash_bytes" in tfmpq.metrics.COST_METRICS


@pytest.mark.slow
def test_most_accurate_policy_that_fits_a_flash_budget(float_cnn, digits, tmp_path):
    """BBPSO with budget="flash_bytes": the best candidate fits, and so does its exported file."""
    (xt, yt), (x, y) = digits
    target = 4600
    result = tfmpq.search.bbpso(float_cnn, (xt[:600], yt[:600]), (x, y), budget="flash_bytes", target=target,
                                swarm=4, iterations=2, evaluation="ptq", bits=(2, 4, 5, 8),
                                search_activations=False, seed=0, verbose=0, run_dir=tmp_path / "run")
    best = result.best
    assert best is not None and best.metrics["flash_bytes"] <= target
    assert result.report["budget"] == {"metric": "flash_bytes", "target": float(target)}
    qat, _, _ = result.evaluator.build(best.policy)
    report = export_tflite(qat, tmp_path / "best.tflite", representative_data=xt[:100], packed="auto")
    assert report.flash_bytes <= best.metrics["flash_bytes"] <= target  # LUT tables: an upper bound
    front = tfmpq.search.nsga2(float_cnn, (xt[:600], yt[:600]), (x, y), objectives=("accuracy", "flash_bytes"),
                               population=4, offspring=4, generations=1, evaluation="ptq", bits=(2, 4, 8), seed=0,
                               verbose=0)
    assert front.hypervolume is not None and 0 < front.hypervolume < 1  # reference: the int8-container file
