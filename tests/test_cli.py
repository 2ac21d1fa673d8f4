"""The `tfmpq` command line, run in-process through `tfmpq.cli.main` (real models, real data, tiny sizes)."""
import json
import os

import numpy as np
import pytest

from tfmpq import cli, zoo

ZOO_NAMES = zoo.names() + zoo.checkpoints()


def run(capsys, *argv):
    """main(argv) -> (exit status, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The `tfmpq: error:` line of stderr (TensorFlow's own C++ log lines may precede it)."""
    lines = [line for line in err.splitlines() if line.startswith("tfmpq: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------- info
def test_info_lists_groups_and_float_layers_of_the_shipped_checkpoint(capsys):
    code, out, _ = run(capsys, "info", "zoo:small_cnn_fmnist")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("model `small_cnn`: input (28, 28, 1), 29,402 parameters, 4 quantizable groups, "
                        "1,924,992 MACs")
    assert lines[1].split() == ["#", "group", "kind", "layers", "params", "MACs"]
    assert lines[2].split() == ["0", "conv1", "Conv2D", "conv1_bn+conv1_relu", "160", "112,896"]
    assert lines[5].split() == ["3", "predictions", "Dense", "-", "5,770", "5,760"]
    assert "stays float: nothing (every weighted layer is in a group)" in out
    assert "--bits 8,4,4,8" in out


def test_info_of_a_zoo_builder_as_json(capsys):
    code, out, _ = run(capsys, "info", "zoo:mlp", "--json")
    assert code == 0
    info = json.loads(out)
    assert [g["kind"] for g in info["groups"]] == ["Dense", "Dense"]
    assert [g["params"] for g in info["groups"]] == [78500, 1010]  # 784-100-10
    assert info["float_layers"] == {}


def test_info_of_a_saved_model_file(capsys, tmp_path, residual_cnn):
    path = tmp_path / "residual.h5"
    residual_cnn.save(path)
    code, out, _ = run(capsys, "info", str(path))
    assert code == 0
    assert "model `residual_cnn`" in out and "DepthwiseConv2D" in out


# ------------------------------------------------------------------------------------- errors
def test_missing_model_file_is_one_line(capsys, tmp_path):
    missing = str(tmp_path / "nope.keras")
    code, _, err = run(capsys, "info", missing)
    assert code == 1
    assert error_line(err) == (
        f"tfmpq: error: Model file not found: {missing!r}. Expected a .keras/.h5 file, a SavedModel folder or "
        f"zoo:NAME (NAME one of {ZOO_NAMES}).")


@pytest.mark.parametrize("kind", ["truncated.keras", "garbage.h5", "broken_savedmodel"])
def test_corrupt_model_file_is_one_line(capsys, tmp_path, kind):
    path = tmp_path / kind
    if kind.endswith(".keras"):  # the shipped checkpoint cut short, as an interrupted copy leaves it
        path.write_bytes(open(zoo.checkpoint_path("small_cnn_fmnist"), "rb").read()[:3000])
    elif kind.endswith(".h5"):
        path.write_bytes(b"not an HDF5 file\n")
    else:
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"\x00garbage")
    for command in (["info", str(path)], ["search", str(path), "--data", "digits", "-o", str(tmp_path / "run")]):
        code, _, err = run(capsys, *command)
        assert code == 1
        assert error_line(err).startswith(f"tfmpq: error: Cannot load a tf_keras model from {path}:")
    assert not (tmp_path / "run").exists()  # nothing started


@pytest.mark.parametrize("defect, message", [
    ("nan", r"Invalid value for `train`: expected finite values\. Received: NaN or Inf in 1 of \d+ samples"),
    ("label", r"Invalid value for `(train|val)`: expected class ids in 0\.\.9 \(the model has 10 outputs\)"),
])
def test_bad_data_file_is_one_line_naming_the_argument(capsys, tmp_path, defect, message):
    import re

    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.random((200, 28, 28), dtype=np.float32), np.arange(200) % 10
    if defect == "nan":
        x[5, 3, 3] = np.nan
    else:
        y[::7] = 11
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=y, x_test=x[:20], y_test=y[:20] % 10)
    code, _, err = run(capsys, "search", "zoo:small_cnn_fmnist", "--data", str(tmp_path / "bad.npz"), "--strategy",
                       "nsga2", "--evaluation", "ptq", "--generations", "1", "-o", str(tmp_path / "run"))
    assert code == 1
    assert re.match("tfmpq: error: " + message, error_line(err)), err
    assert not (tmp_path / "run" / "evaluations.jsonl").exists()


def test_unknown_zoo_name_is_one_line(capsys):
    code, _, err = run(capsys, "info", "zoo:resnet21")
    assert code == 1
    assert error_line(err) == (
        "tfmpq: error: Invalid value for `spec`: unknown zoo model. Received: spec='zoo:resnet21'. "
        f"Expected zoo:NAME with NAME one of {ZOO_NAMES}.")


def test_a_file_that_is_not_a_model_is_one_line(capsys, tmp_path):
    bad = tmp_path / "model.h5"
    bad.write_text("not a model")
    code, _, err = run(capsys, "info", str(bad))
    assert code == 1
    assert error_line(err).startswith(f"tfmpq: error: Cannot load a tf_keras model from {bad}: ")


def test_out_of_range_bits_name_the_group(capsys, tmp_path):
    code, _, err = run(capsys, "quantize", "zoo:small_cnn_fmnist", "--bits", "8,9,4,8", "-o", str(tmp_path))
    assert code == 1
    assert error_line(err) == (
        "tfmpq: error: Invalid value for `weight_bits`: expected an integer in 2..8, or 16/32 for float. "
        "Received: weight_bits=9 for group `conv2`.")
    assert not (tmp_path / "qat.h5").exists()


def test_wrong_number_of_bits(capsys, tmp_path):
    code, _, err = run(capsys, "quantize", "zoo:small_cnn_fmnist", "--bits", "8,4,8", "-o", str(tmp_path))
    assert code == 1
    assert error_line(err) == (
        "tfmpq: error: Invalid value for `weight_bits`: expected 4 bit-widths, one per group "
        "(conv1, conv2, conv3, predictions). Received 3: [8, 4, 8].")


def test_unknown_dataset_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "quantize", "zoo:small_cnn_fmnist", "--bits", "8", "--data", "imagenet77",
                       "-o", str(tmp_path))
    assert code == 1
    assert error_line(err).startswith(
        "tfmpq: error: Invalid value for `name_or_path`: unknown dataset. Received: name_or_path='imagenet77'.")


@pytest.mark.parametrize("argv, message", [
    (["quantize", "zoo:small_cnn_fmnist", "--bits", "8,x", "-o", "out"],
     "argument --bits: expected comma-separated integers such as 8,4,4,8. Received: '8,x'"),
    (["quantize", "zoo:small_cnn_fmnist", "-o", "out"], "the following arguments are required: --bits"),
    (["info", "zoo:small_cnn_fmnist", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["search", "zoo:small_cnn_fmnist", "--strategy", "random", "-o", "run"],
     "argument --strategy: invalid choice: 'random' (choose from 'nsga2', 'bbpso', 'ilp', 'ctpe', 'exhaustive')"),
    (["search", "zoo:small_cnn_fmnist", "--strategy", "ilp", "--target", "v4", "-o", "run"],
     "argument --target: expected a number or uN (e.g. u4). Received: 'v4'"),
    (["search", "zoo:small_cnn_fmnist", "--population", "0", "-o", "run"],
     "argument --population: expected a positive integer. Received: '0'"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_usage_exits_2_with_argparse_usage(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tfmpq")
    assert message in err.splitlines()[-1]


def test_debug_re_raises(capsys):
    with pytest.raises(ValueError, match="unknown zoo model"):
        cli.main(["info", "zoo:resnet21", "--debug"])


def test_report_of_a_missing_run_dir(capsys, tmp_path):
    code, _, err = run(capsys, "report", str(tmp_path / "run"))
    assert code == 1
    assert error_line(err) == (f"tfmpq: error: Run directory not found: {str(tmp_path / 'run')!r}. "
                               "Expected the RUN_DIR of `tfmpq search`.")


def test_export_of_a_float_model_is_refused(capsys, tmp_path, residual_cnn):
    path = tmp_path / "float.h5"
    residual_cnn.save(path)
    code, _, err = run(capsys, "export", str(path), "-o", str(tmp_path / "out"))
    assert code == 1
    assert error_line(err) == (f"tfmpq: error: {path} is not a tfmpq QAT model (no quantized group). "
                               f"Quantize it first: tfmpq quantize {path} --bits ... -o OUT")


# ----------------------------------------------------------------------- quantize -> export
@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """`tfmpq quantize` of the demo CNN: 1 QAT epoch on 512 images."""
    out = tmp_path_factory.mktemp("quantized")
    code = cli.main(["quantize", "zoo:small_cnn_fmnist", "--bits", "8,4,4,8", "--epochs", "1",
                     "--num-train", "512", "--num-test", "200", "-o", str(out)])
    assert code == 0
    return out


def test_quantize_writes_model_policy_and_metrics(quantized):
    assert (quantized / "qat.h5").is_file()
    policy = json.loads((quantized / "policy.json").read_text())
    assert policy["groups"] == ["conv1", "conv2", "conv3", "predictions"]
    assert policy["weight_bits"] == [8, 4, 4, 8] and policy["activation_bits"] == [8, 8, 8, 8]
    metrics = json.loads((quantized / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["num_test"] == 200
    assert 0.6 < metrics["test_accuracy"] <= 1.0  # the float checkpoint is ~90 %: QAT must not wreck it
    assert metrics["metrics"]["avg_weight_bits"] == pytest.approx((8 * 144 + 4 * 4608 + 4 * 18432 + 8 * 5760) / 28944)


def test_quantized_model_reloads_as_a_qat_model(quantized):
    import tfmpq
    from tfmpq._keras import keras

    with tfmpq.quantize_scope():
        qat = keras.models.load_model(quantized / "qat.h5", compile=False)
    bits = {name: g["weight_bits"] for name, g in tfmpq.policy_of(qat).items()}
    assert bits == {"conv1": 8, "conv2": 4, "conv3": 4, "predictions": 8}


def test_info_of_a_quantize_output_shows_its_policy(capsys, quantized):
    capsys.readouterr()
    code, out, _ = run(capsys, "info", str(quantized))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "QAT model `small_cnn` (tfmpq.quantize_model): 4 quantized groups"
    assert lines[3].split() == ["conv2", "Conv2D", "4", "8", "yes"]


def test_export_of_a_quantize_output_runs_on_tflite_micro(capsys, quantized, tmp_path):
    capsys.readouterr()
    code, out, _ = run(capsys, "export", str(quantized), "--num-test", "100", "--c-array", "-o", str(tmp_path))
    assert code == 0
    name = quantized.name
    assert (tmp_path / f"{name}.tflite").is_file()
    assert (tmp_path / f"{name}.h").is_file() and (tmp_path / f"{name}.cc").is_file()
    rows = json.loads((tmp_path / "export.json").read_text())
    assert rows[0]["report"]["packed_weight_bytes"] < rows[0]["report"]["int8_weight_bytes"]
    tflm = rows[0]["accuracy"]["tflm"]
    assert abs(tflm - rows[0]["keras_accuracy"]) <= 0.03  # the deployed model is the trained one
    assert f"{100 * tflm:.2f}%" in out


def test_packed_export_is_smaller_and_runs_on_tflite_micro_only(capsys, quantized, tmp_path):
    capsys.readouterr()
    code, out, _ = run(capsys, "export", str(quantized / "qat.h5"), "--packed", "--runtime", "both",
                       "--num-test", "50", "-o", str(tmp_path))
    assert code == 0
    report = json.loads((tmp_path / "export.json").read_text())[0]
    assert report["report"]["packed"] is True
    assert report["report"]["lut_weight_bytes"] < report["report"]["int8_weight_bytes"]
    assert set(report["accuracy"]) == {"tflm"}  # LiteRT cannot run a LUT-packed file: not attempted
    assert "LiteRT rejects compressed tensors" in out


# ------------------------------------------------------------------------------ search -> report
@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    """A tiny post-training-quantization NSGA-II run: 2 uniform policies, no generation."""
    run_dir = tmp_path_factory.mktemp("runs") / "nsga2"
    code = cli.main(["search", "zoo:small_cnn_fmnist", "--strategy", "nsga2", "--evaluation", "ptq",
                     "--num-train", "300", "--num-val", "100", "--bits", "4,8", "--population", "2",
                     "--offspring", "2", "--generations", "0", "--quiet", "-o", str(run_dir)])
    assert code == 0
    return run_dir


def test_search_passes_calibration_batches_to_the_evaluator(search_run, tmp_path):
    assert json.loads((search_run / "run.json").read_text())["evaluator"]["calibration_batches"] == 4  # the default
    run_dir = tmp_path / "c1"
    code = cli.main(["search", "zoo:small_cnn_fmnist", "--evaluation", "ptq", "--num-train", "300", "--num-val", "100",
                     "--bits", "4,8", "--population", "2", "--offspring", "2", "--generations", "0",
                     "--calibration-batches", "1", "--quiet", "-o", str(run_dir)])
    assert code == 0
    assert json.loads((run_dir / "run.json").read_text())["evaluator"]["calibration_batches"] == 1


def test_a_zoo_checkpoint_is_validated_only_on_images_it_was_not_trained_on(capsys, tmp_path):
    base = ["search", "zoo:small_cnn_fmnist", "--evaluation", "ptq", "--generations", "0", "-o", str(tmp_path / "r")]
    code, _, err = run(capsys, *base, "--val-fraction", "0.2")
    assert code == 1
    assert error_line(err).startswith("tfmpq: error: Invalid value for `--val-fraction`: zoo:small_cnn_fmnist was "
                                      "trained on `default` minus its fixed validation split (fraction 0.1, seed 0)")
    code, _, err = run(capsys, *base, "--data", "fashion_mnist")
    assert code == 1 and "Invalid value for `--data`: zoo:small_cnn_fmnist was trained on `default`" in error_line(err)
    code, _, err = run(capsys, *base, "--strategy", "bbpso", "--compare", "2")
    assert code == 1 and "--compare needs --strategy nsga2" in error_line(err)
    assert not (tmp_path / "r" / "evaluations.jsonl").exists()


def test_the_validation_split_does_not_move_with_seed_or_num_train():
    from tfmpq import data

    ds = data.load("default")
    a = data.roles(ds, num_train=500, seed=0)
    b = data.roles(ds, num_train=2000, seed=7)
    np.testing.assert_array_equal(a.val[0], b.val[0])
    assert len(a.val[1]) == 1000 and len(a.test[1]) == 2000 and len(a.train[1]) == 500
    # the validation split is exactly what the shipped checkpoint was trained without
    (_, _), (xv, _) = data.split_validation(ds, 0.1, seed=0)
    np.testing.assert_array_equal(a.val[0], xv)
    train_rows = {r.tobytes() for r in b.train[0]}
    assert not any(r.tobytes() in train_rows for r in a.val[0])


def test_python_m_tfmpq_search_is_tfmpq_search_and_test_is_never_validation(capsys, tmp_path):
    """Issue 18: one search command line; issue 12: no option scores or chooses on the test split."""
    import subprocess
    import sys

    with pytest.raises(SystemExit) as exc:
        cli.main(["search", "zoo:small_cnn_fmnist", "--val", "test", "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "argument --val: there is no choice of validation split" in err
    assert "test split is only reported on" in err and not (tmp_path / "r").exists()
    proc = subprocess.run([sys.executable, "-m", "tfmpq.search", "--help"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: tfmpq search")


@pytest.mark.slow
def test_exhaustive_search_then_resume(capsys, tmp_path):
    """(Was tests/search/test_cli.py, for the `python -m tfmpq.search` command folded into this one.)"""
    from tfmpq import data
    from tfmpq._keras import keras

    ds = data.load("digits")
    keras.utils.set_random_seed(0)
    i = keras.Input(ds.input_shape)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(keras.layers.Flatten()(i))
    model = keras.Model(i, keras.layers.Dense(10, activation="softmax", name="out")(x))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(ds.x_train, ds.y_train, epochs=5, verbose=0)
    path = tmp_path / "mlp.keras"
    model.save(path)
    args = ["search", str(path), "--strategy", "exhaustive", "--data", "digits", "--evaluation", "ptq",
            "--bits", "2,8", "--quiet", "-o", str(tmp_path / "run")]
    code, out, _ = run(capsys, *args)
    assert code == 0 and "search wall time" in out
    front = json.loads((tmp_path / "run" / "front.json").read_text())
    assert front and all(len(c["genes"]) == 2 for c in front)
    code, out, _ = run(capsys, *args, "--resume")
    assert code == 0 and "(0 evaluated here, 0 cached)" in out


def test_search_writes_a_run_dir(search_run):
    for name in ("run.json", "evaluations.jsonl", "front.json", "summary.txt", "pareto.png", "cli.json"):
        assert (search_run / name).is_file(), name
    record = json.loads((search_run / "cli.json").read_text())
    assert record["model"] == "zoo:small_cnn_fmnist"
    assert record["options"]["evaluation"] == "ptq" and record["options"]["bits"] == [4, 8]
    genes = [json.loads(line)["genes"] for line in (search_run / "evaluations.jsonl").read_text().splitlines()]
    assert sorted(genes) == [[4, 4, 4, 4], [8, 8, 8, 8]]


def test_search_refuses_a_used_run_dir(capsys, search_run):
    code, _, err = run(capsys, "search", "zoo:small_cnn_fmnist", "--evaluation", "ptq", "-o", str(search_run))
    assert code == 1
    assert error_line(err).startswith(f"tfmpq: error: `{search_run}` already holds a search run")


def test_search_resume_takes_the_recorded_options(capsys, search_run):
    code, out, _ = run(capsys, "search", "zoo:small_cnn_fmnist", "--resume", "--quiet", "-o", str(search_run))
    assert code == 0
    assert "(0 evaluated here" in out  # nothing left to do: the options came from cli.json


def _front(run_dir):
    return [(c["genes"], c["accuracy"]) for c in json.loads((run_dir / "front.json").read_text())]


def test_search_on_worker_processes_writes_the_serial_front(capsys, search_run, tmp_path):
    code, out, _ = run(capsys, "search", "zoo:small_cnn_fmnist", "--strategy", "nsga2", "--evaluation", "ptq",
                       "--num-train", "300", "--num-val", "100", "--bits", "4,8", "--population", "2",
                       "--offspring", "2", "--generations", "0", "--quiet", "--executor", "process", "--workers", "2",
                       "-o", str(tmp_path / "run"))
    assert code == 0, out
    assert "process executor with 2 workers" in out
    assert _front(tmp_path / "run") == _front(search_run)
    assert "executor" not in json.loads((tmp_path / "run" / "cli.json").read_text())["options"]  # resume may change it


@pytest.mark.parametrize("flags, message", [
    (["--workers", "2"], "--workers, --ray-address and --gpus-per-worker need --executor process or ray"),
    (["--executor", "process", "--ray-address", "auto"], "--ray-address and --gpus-per-worker need --executor ray"),
])
def test_search_executor_flags_are_checked_first(capsys, tmp_path, flags, message):
    code, _, err = run(capsys, "search", "zoo:small_cnn_fmnist", *flags, "-o", str(tmp_path / "run"))
    assert code == 1
    assert error_line(err) == f"tfmpq: error: Invalid flags: {message}."
    assert not (tmp_path / "run").exists()


def test_report_prints_tables_and_writes_plots(capsys, search_run, tmp_path):
    code, out, _ = run(capsys, "report", str(search_run), "-o", str(tmp_path))
    assert code == 0
    assert out.startswith(f"run {search_run}: nsga2, objectives accuracy / weight_bytes; 2 candidates (0 failed, ptq)")
    assert "Uniform policies:" in out and "4-bit" in out and "8-bit" in out
    for name in ("report.md", "pareto.png", "hypervolume.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| weight bits" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_bbpso_search_then_export_best(capsys, tmp_path):
    run_dir = tmp_path / "bbpso"
    code, out, _ = run(capsys, "search", "zoo:small_cnn_fmnist", "--strategy", "bbpso", "--evaluation", "ptq",
                       "--num-train", "300", "--num-val", "100", "--bits", "4,8", "--swarm", "2", "--iterations",
                       "1", "--target", "6", "--quiet", "-o", str(run_dir))
    assert code == 0
    assert "best under avg_op_bits <= 6.0" in out
    code, out, _ = run(capsys, "export", str(run_dir), "--num-test", "100", "-o", str(run_dir / "export"))
    assert code == 0
    rows = json.loads((run_dir / "export" / "export.json").read_text())
    assert len(rows) == 1  # a budgeted search exports its best policy
    assert rows[0]["metrics"]["avg_op_bits"] <= 6.0


def test_ctpe_and_ilp_refuse_searched_activations_and_seed_ilp(capsys, tmp_path):
    code, _, err = run(capsys, "search", "zoo:small_cnn_fmnist", "--strategy", "ctpe", "--search-activations",
                       "-o", str(tmp_path / "c"))
    assert code == 1 and "allocates weight bits only" in error_line(err)
    code, _, err = run(capsys, "search", "zoo:small_cnn_fmnist", "--strategy", "ilp", "--seed-ilp", "2",
                       "-o", str(tmp_path / "d"))
    assert code == 1 and "--seed-ilp seeds nsga2 or bbpso" in error_line(err)


@pytest.mark.slow
def test_ilp_search_at_uniform_4_bit_bytes_then_resume(capsys, tmp_path):
    run_dir = tmp_path / "ilp"
    argv = ["search", "zoo:small_cnn_fmnist", "--strategy", "ilp", "--evaluation", "ptq", "--num-train", "300",
            "--num-val", "100", "--bits", "3,4,8", "--budget", "weight_bytes", "--target", "u4", "--solutions", "2",
            "--probes", "2", "--quiet", "-o", str(run_dir)]
    code, out, _ = run(capsys, *argv)
    assert code == 0, out
    best = json.loads((run_dir / "best.json").read_text())
    target = best["report"]["budget"]["target"]
    assert best["metrics"]["weight_bytes"] <= target
    import tfmpq
    from tfmpq import zoo

    model = zoo.resolve_model("zoo:small_cnn_fmnist")
    assert target == tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, 4))["weight_bytes"]
    assert len(json.loads((run_dir / "sensitivity.json").read_text())["trace"]) == 4
    assert len((run_dir / "evaluations.jsonl").read_text().splitlines()) == 2
    code, out, _ = run(capsys, "search", "zoo:small_cnn_fmnist", "--resume", "--quiet", "-o", str(run_dir))
    assert code == 0 and "(0 evaluated here" in out


@pytest.mark.slow
def test_ctpe_search_then_export_best(capsys, tmp_path):
    run_dir = tmp_path / "ctpe"
    code, out, _ = run(capsys, "search", "zoo:small_cnn_fmnist", "--strategy", "ctpe", "--evaluation", "ptq",
                       "--num-train", "300", "--num-val", "100", "--budget", "weight_bytes", "--target", "u4",
                       "--trials", "4", "--probes", "4", "--quiet", "-o", str(run_dir))
    assert code == 0, out
    code, out, _ = run(capsys, "export", str(run_dir), "--num-test", "100", "-o", str(run_dir / "export"))
    assert code == 0
    rows = json.loads((run_dir / "export" / "export.json").read_text())
    assert len(rows) == 1 and rows[0]["metrics"]["weight_bytes"] <= json.loads(
        (run_dir / "best.json").read_text())["report"]["budget"]["target"]


@pytest.mark.slow
def test_python_dash_m_tfmpq(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tfmpq", "info", "zoo:nope"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("tfmpq: error: Invalid value for `spec`: unknown zoo model.")


def test_export_of_a_oneshot_run_needs_finetune(capsys, tmp_path):
    """A one-shot run's scores belong to the shared model: export asks for stand-alone QAT."""
    run_dir = tmp_path / "os"
    run_dir.mkdir()
    (run_dir / "cli.json").write_text(json.dumps({"command": "search", "model": "zoo:small_cnn_fmnist",
                                                  "options": {"evaluation": "oneshot"}}))
    (run_dir / "run.json").write_text(json.dumps({"evaluator": {"evaluation": "oneshot", "epochs": 4}}))
    (run_dir / "front.json").write_text(json.dumps([{"genes": [8, 8, 8, 8], "accuracy": 0.9}]))
    code, _, err = run(capsys, "export", str(run_dir), "-o", str(tmp_path / "out"))
    assert code == 1
    assert "its scores come from a shared one-shot model" in error_line(err)
    assert "Add --finetune EPOCHS" in error_line(err)


def test_search_usage_names_oneshot_and_rescore(capsys):
    with pytest.raises(SystemExit):
        cli.main(["search", "--help"])
    out = capsys.readouterr().out
    assert "oneshot" in out and "--rescore" in out and "--distill" in out and "--rescore-members" in out
    with pytest.raises(SystemExit):
        cli.main(["search", "zoo:small_cnn_fmnist", "--rescore", "qat", "--rescore-members", "0"])
    assert "--rescore-members" in capsys.readouterr().err


# ------------------------------------------------------------- run directories of tfmpq before issue 26
OLD_RUNS = os.path.join(os.path.dirname(__file__), "search", "data", "pre_refactor")


@pytest.mark.parametrize("name", ["cli_nsga2", "cli_bbpso", "cli_ilp"])
def test_the_options_of_an_old_command_line_are_what_it_recorded(name):
    """The command lines of runs written before the flags were generated from the registry and the
    configurations resolve to exactly the options those runs recorded in cli.json."""
    record = json.loads(open(os.path.join(OLD_RUNS, name, "cli.json")).read())
    args = cli.build_parser().parse_args(record["argv"])
    options = json.loads(json.dumps(cli._search_options(args)))
    assert {k: options.get(k) for k in record["options"]} == record["options"]
    # options added since (issue 25's channel-wise space) resolve to their defaults: a layer-wise space
    added = {k: v for k, v in options.items() if k not in record["options"]}
    assert added == {"granularity": "layer", "channel_clusters": None, "channel_ranking": None,
                     "prune_channels": False}


def _resume_old(capsys, tmp_path, name, *flags):
    import shutil

    run_dir = tmp_path / name
    shutil.copytree(os.path.join(OLD_RUNS, name), run_dir)
    signature = json.loads((run_dir / "run.json").read_text())
    code, out, err = run(capsys, "search", "zoo:small_cnn_fmnist", "--resume", *flags, "--quiet", "-o", str(run_dir))
    assert code == 0, err
    assert json.loads((run_dir / "run.json").read_text()) == signature  # the same problem, evaluator included
    return run_dir, out


def test_an_old_command_line_run_resumes_and_goes_on(capsys, tmp_path):
    """A finished nsga2 run of the old command line, extended by a generation: its cli.json, signature
    (the real evaluator's) and checkpoint are read as they are, and only the new offspring are evaluated."""
    run_dir, out = _resume_old(capsys, tmp_path, "cli_nsga2", "--generations", "1")
    assert "(2 evaluated here, 0 cached)" in out
    assert len((run_dir / "evaluations.jsonl").read_text().splitlines()) == 4


def test_old_command_line_bbpso_and_ilp_runs_resume(capsys, tmp_path):
    run_dir, out = _resume_old(capsys, tmp_path, "cli_bbpso", "--iterations", "1")
    assert "evaluated here" in out and len(json.loads((run_dir / "history.json").read_text())) == 2
    _, out = _resume_old(capsys, tmp_path, "cli_ilp")
    assert "(0 evaluated here, 0 cached)" in out  # finished: the ILP's tables come from run.json


def test_report_budgets_compares_on_test_and_draws_the_curve(capsys, search_run, tmp_path):
    """`tfmpq report RUN --budgets ...`: the run resumed (nothing scored again), every pick and uniform policy
    fine-tuned alike, the table printed, budgets.json and budget_curve.png written."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(search_run, run_dir)
    lines = (run_dir / "evaluations.jsonl").read_text().splitlines()
    code = cli.main(["report", str(run_dir), "--budgets", "9000,20000", "--finetune-epochs", "1", "--num-test", "300",
                     "--candidates-per-budget", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "held-out accuracy under a budget on weight_bytes (300 test samples" in out
    assert (run_dir / "evaluations.jsonl").read_text().splitlines() == lines  # nothing scored again
    saved = json.loads((run_dir / "budgets.json").read_text())["results"]["weight_bytes"]
    assert [r["budget"] for r in saved["rows"]] == [9000.0, 20000.0] and saved["num_test"] == 300
    assert (run_dir / "budget_curve.png").stat().st_size > 10_000
    with pytest.raises(SystemExit) as exc:  # a usage error
        cli.main(["report", str(run_dir), "--budgets", "auto,3"])
    assert exc.value.code == 2 and "argument --budgets: expected auto or comma-separated numbers" in capsys.readouterr().err


def test_channel_wise_ilp_search_then_resume(capsys, tmp_path):
    """--granularity channel --channel-clusters K (flags generated from SpaceConfig): the run records its channel
    order, its best policy is channel-wise, and --resume decodes it the same way."""
    run_dir = tmp_path / "ilp"
    code, out, _ = run(capsys, "search", "zoo:small_cnn_fmnist", "--strategy", "ilp", "--evaluation", "ptq",
                       "--num-train", "300", "--num-val", "100", "--bits", "2,4,8", "--budget", "weight_bytes",
                       "--target", "u4", "--solutions", "2", "--probes", "2", "--granularity", "channel",
                       "--channel-clusters", "3", "--quiet", "-o", str(run_dir))
    assert code == 0, out
    space = json.loads((run_dir / "run.json").read_text())["space"]
    assert space["granularity"] == "channel" and space["channel_clusters"] == 3 and space["channel_ranking"] == "weight"
    assert len(space["gene_names"]) == 12 and space["gene_names"][:3] == ["conv1/w0", "conv1/w1", "conv1/w2"]
    best = json.loads((run_dir / "best.json").read_text())
    assert len(best["genes"]) == 12 and any(isinstance(b, list) for b in best["policy"]["weight_bits"])
    code, out, _ = run(capsys, "search", "zoo:small_cnn_fmnist", "--resume", "--quiet", "-o", str(run_dir))
    assert code == 0 and "(0 evaluated here" in out


def test_channel_wise_ilp_search_with_pruning_then_resume(capsys, tmp_path):
    """--prune-channels (a flag generated from SpaceConfig): every cluster gene but each group's last may be 0; under
    80% of uniform 2-bit's bytes the ILP's pick prunes, and --resume decodes it the same way."""
    run_dir = tmp_path / "ilp"
    from tfmpq import QuantPolicy, metrics

    model = zoo.resolve_model("zoo:small_cnn_fmnist")
    target = 0.8 * metrics.summary(model, QuantPolicy.uniform(model, 2, 8))["weight_bytes"]
    code, out, _ = run(capsys, "search", "zoo:small_cnn_fmnist", "--strategy", "ilp", "--evaluation", "ptq",
                       "--num-train", "300", "--num-val", "100", "--bits", "2,4,8", "--budget", "weight_bytes",
                       "--target", str(target), "--solutions", "1", "--probes", "2", "--granularity", "channel",
                       "--channel-clusters", "3", "--prune-channels", "--quiet", "-o", str(run_dir))
    assert code == 0, out
    space = json.loads((run_dir / "run.json").read_text())["space"]
    assert space["prune_channels"] is True
    assert [0 in c for c in space["choices"]] == [True, True, False] * 4
    best = json.loads((run_dir / "best.json").read_text())
    assert any(isinstance(b, list) and 0 in b for b in best["policy"]["weight_bits"]), best["policy"]
    assert best["metrics"]["weight_bytes"] <= target
    code, out, _ = run(capsys, "search", "zoo:small_cnn_fmnist", "--resume", "--quiet", "-o", str(run_dir))
    assert code == 0 and "(0 evaluated here" in out
    code, _, err = run(capsys, "search", "zoo:small_cnn_fmnist", "--prune-channels", "-o", str(tmp_path / "layer"))
    assert code == 1 and "Invalid value for `prune_channels`: expected False with granularity='layer'" in error_line(err)


@pytest.mark.parametrize("flags, message", [
    (["--channel-clusters", "4"], "Invalid value for `channel_clusters`: expected None with granularity='layer'"),
    (["--granularity", "channel", "--channel-clusters", "0"], "Invalid value for `channel_clusters`: expected an "
                                                              "integer >= 1"),
    (["--granularity", "channel", "--bits", "4,8,16"], "Invalid value for `bits`: a channel-wise space takes widths"),
])
def test_bad_channel_flags_fail_before_any_loading(capsys, tmp_path, flags, message):
    code, out, err = run(capsys, "search", "zoo:small_cnn_fmnist", *flags, "-o", str(tmp_path / "run"))
    assert code == 1 and message in error_line(err)
    assert "search of" not in out  # refused before the data and the model were loaded
