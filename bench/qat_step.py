"""QAT step cost: a float training epoch vs a QAT epoch (bn_fold one_conv and two_conv), and the accuracy of both.

Timing: for each model, the float model and its QAT models (a mixed policy: weight bits 4, 3, 6, 8
repeated over the groups, 8-bit activations) are built, compiled (Adam) and traced first; then each
repeat times one epoch of each, in an order rotated every repeat, all in this one process, so that the
load of a shared machine falls on every variant alike. Reported: median, min and max epoch seconds,
the ratio of the medians to the float epoch, the median of the per-repeat ratios, CPU seconds per epoch
(process time, both cores: on a loaded machine the steadier measure of the work a step does) with
their min and max, and the load average while the model ran. Models: zoo builder names; ``small_cnn``
is the trained demo checkpoint (``zoo:small_cnn_fmnist``), the others are built untrained (the cost of
a step does not depend on the weights) on the Fashion-MNIST images of ``tfmpq.data.load("default")``,
zero-padded to 32x32 for the models that need it (``mobilenet_v1``: MobileNet v1, alpha 0.25).

Accuracy: uniform 8-, 4- and 3-bit weights and a mixed policy (8-bit activations), each fine-tuned from
the float checkpoint ``zoo:small_cnn_fmnist`` with both modes alike (``Evaluator.finetune``: the same
seed, data order, optimizer and epochs, the epoch of best validation accuracy kept), then scored on the
2,000 held-out test images: accuracy with its 95% Wilson interval, and McNemar's exact test on the
images where the two modes disagree (same policy and seed), the paired test of "the modes differ".

Run: python -m bench.qat_step [--models small_cnn,mobilenet_v1,NAME] [--repeats 5] [--num-train 10000]
     [--batch-size 128] [--breakdown] [--epochs 3] [--seeds 0,1] [--skip-timing] [--skip-accuracy]
     [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

MODES = ("one_conv", "two_conv")
TIMING_BITS = (4, 3, 6, 8)


def _load_average() -> float:
    return os.getloadavg()[0]


def _timing_model(name: str, x: np.ndarray):
    """(float model, inputs it takes): the shipped checkpoint for small_cnn, else the untrained zoo model,
    on 28x28 images or, when the builder refuses them, zero-padded to 32x32."""
    from tfmpq import zoo

    if name == "small_cnn":
        return zoo.resolve_model("zoo:small_cnn_fmnist"), x
    try:
        return zoo.get(name, input_shape=tuple(x.shape[1:]), num_classes=10), x
    except ValueError as e:
        if "input_shape" not in str(e):
            raise
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    return zoo.get(name, input_shape=tuple(padded.shape[1:]), num_classes=10), padded


def _mixed_policy(model, bits=TIMING_BITS, activation_bits=8):
    from tfmpq import QuantPolicy, quantizable_groups

    n = len(quantizable_groups(model))
    return QuantPolicy.from_bits(model, [bits[i % len(bits)] for i in range(n)], activation_bits)


def time_model(name: str, x: np.ndarray, y: np.ndarray, repeats: int, batch_size: int,
               breakdown: bool = False) -> dict:
    """Epoch seconds of the float model and of its QAT models in both modes, interleaved repeats.

    With `breakdown`, also one_conv with float weights ("w32": what activation fake-quant and the BN fold
    cost), with float activations ("a32": what weight fake-quant costs) and with both float ("w32a32":
    the fold and the wrappers alone)."""
    from tfmpq import QuantPolicy, quantize_model
    from tfmpq._keras import keras, tf

    model, x = _timing_model(name, x)
    policy = _mixed_policy(model)
    extra = {}
    if breakdown:
        n = len(policy.group_names)
        extra = {"one_conv w32": QuantPolicy.from_bits(model, [32] * n, 8),
                 "one_conv a32": QuantPolicy.from_bits(model, list(policy.weight_bits), 32),
                 "one_conv w32a32": QuantPolicy.from_bits(model, [32] * n, 32)}
    data = tf.data.Dataset.from_tensor_slices((x, y)).cache().batch(batch_size)

    def compiled(m):
        m.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(), ["accuracy"])
        return m

    keras.utils.set_random_seed(0)
    float_model = keras.models.clone_model(model)
    float_model.set_weights(model.get_weights())
    variants = {"float": compiled(float_model)}
    for mode in MODES:
        variants[mode] = compiled(quantize_model(model, policy, bn_fold=mode))
    for label, p in extra.items():
        variants[label] = compiled(quantize_model(model, p, bn_fold="one_conv"))
    loads = [_load_average()]
    for m in variants.values():  # trace and fill the dataset cache: not timed
        m.fit(data, epochs=1, verbose=0)
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    names = list(variants)
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            variants[k].fit(data, epochs=1, verbose=0)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
        loads.append(_load_average())
    out = {"model": model.name, "groups": len(policy.group_names), "weight_bits": list(policy.weight_bits),
           "images": int(len(x)), "input_shape": list(x.shape[1:]), "batch_size": batch_size, "repeats": repeats,
           "load_average": {"min": min(loads), "max": max(loads), "mean": float(np.mean(loads))}, "variants": {}}
    for k in names:
        w = np.array(wall[k])
        per_repeat = np.array(wall[k]) / np.array(wall["float"])
        out["variants"][k] = {
            "wall_s": w.tolist(), "median_s": float(np.median(w)), "min_s": float(w.min()), "max_s": float(w.max()),
            "ratio_of_medians": float(np.median(w) / np.median(wall["float"])),
            "median_ratio_per_repeat": float(np.median(per_repeat)),
            "cpu_s": list(cpu[k]), "cpu_s_median": float(np.median(cpu[k])),
            "cpu_s_min": float(min(cpu[k])), "cpu_s_max": float(max(cpu[k])),
            "cpu_ratio": float(np.median(cpu[k]) / np.median(cpu["float"])),
        }
    return out


def print_timing(res: dict) -> None:
    la = res["load_average"]
    print(f"\n{res['model']}: {res['groups']} groups, {res['images']} images {tuple(res['input_shape'])}, batch "
          f"{res['batch_size']}, {res['repeats']} repeats, load average {la['min']:.1f}-{la['max']:.1f}")
    print(f"  {'variant':15s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'x float':>8s} {'x per rep':>9s} "
          f"{'cpu s':>6s} {'cpu min-max':>12s} {'cpu x':>6s}")
    for k, v in res["variants"].items():
        print(f"  {k:15s} {v['median_s']:9.2f} {v['min_s']:7.2f} {v['max_s']:7.2f} {v['ratio_of_medians']:8.2f} "
              f"{v['median_ratio_per_repeat']:9.2f} {v['cpu_s_median']:6.2f} "
              f"{v['cpu_s_min']:5.2f}-{v['cpu_s_max']:<6.2f} "
              f"{v['cpu_ratio']:6.2f}")


def accuracy(epochs: int, seeds: list[int], batch_size: int = 64, only: list[str] | None = None) -> dict:
    """Fine-tunes 4 policies x 2 modes from the float checkpoint and scores them on the test images."""
    from tfmpq import QuantPolicy, data, stats, zoo
    from tfmpq.evaluate import Evaluator

    # The checkpoint's own roles: val is the split it was not trained on, test is only reported.
    r = data.roles(data.load("default"))
    train, val = r.train, r.val
    x_test, y_test = r.test
    model = zoo.resolve_model("zoo:small_cnn_fmnist")
    policies = {
        "uniform 8": QuantPolicy.uniform(model, 8, 8),
        "uniform 4": QuantPolicy.uniform(model, 4, 8),
        "uniform 3": QuantPolicy.uniform(model, 3, 8),
        "mixed 4,3,6,8": _mixed_policy(model),
    }
    if only:
        policies = {k: v for k, v in policies.items() if k in only or k.split()[0] in only}
    float_pred = np.asarray(model(x_test, training=False)).argmax(-1)
    out = {"float_test_accuracy": float(np.mean(float_pred == y_test)), "epochs": epochs, "seeds": seeds,
           "num_train": int(len(train[0])), "num_val": int(len(val[0])), "num_test": int(len(y_test)), "rows": []}
    print(f"\naccuracy: zoo:small_cnn_fmnist (float test accuracy {out['float_test_accuracy']:.2%}), fine-tuned "
          f"{epochs} epochs on {len(train[0])} images, {len(y_test)} test images; Wilson 95% intervals")
    for label, policy in policies.items():
        for seed in seeds:
            correct = {}
            row = {"policy": label, "weight_bits": list(policy.weight_bits), "seed": seed}
            for mode in MODES:
                ev = Evaluator(model, train, val, evaluation="qat", epochs=epochs, batch_size=batch_size, seed=seed,
                               bn_fold=mode)
                start = time.perf_counter()
                cand, qat = ev.finetune(policy, epochs)
                pred = np.concatenate([np.asarray(qat(x_test[i:i + 500], training=False)).argmax(-1)
                                       for i in range(0, len(x_test), 500)])
                correct[mode] = pred == y_test
                k = int(correct[mode].sum())
                lo, hi = stats.wilson_interval(k, len(y_test))
                row[mode] = {"test_accuracy": k / len(y_test), "wilson95": [lo, hi], "val_accuracy": cand.accuracy,
                             "seconds": time.perf_counter() - start}
            paired = stats.mcnemar(correct["one_conv"], correct["two_conv"])
            only_one, only_two = paired["a_only"], paired["b_only"]
            row["difference_pp"] = 100 * (row["one_conv"]["test_accuracy"] - row["two_conv"]["test_accuracy"])
            row["mcnemar_p"] = paired["p_value"]
            row["disagreements"] = [only_one, only_two]
            out["rows"].append(row)
            a, b = row["one_conv"], row["two_conv"]
            print(f"  {label:14s} seed {seed}: one_conv {a['test_accuracy']:.2%} [{a['wilson95'][0]:.2%}, "
                  f"{a['wilson95'][1]:.2%}]  two_conv {b['test_accuracy']:.2%} [{b['wilson95'][0]:.2%}, "
                  f"{b['wilson95'][1]:.2%}]  diff {row['difference_pp']:+.2f} pp, McNemar p = {row['mcnemar_p']:.2f} "
                  f"({only_one} vs {only_two} images)")
    diffs = [abs(r["difference_pp"]) for r in out["rows"]]
    out["max_abs_difference_pp"] = max(diffs)
    out["min_mcnemar_p"] = min(r["mcnemar_p"] for r in out["rows"])
    print(f"  max |one_conv - two_conv| = {max(diffs):.2f} pp; smallest McNemar p = {out['min_mcnemar_p']:.2f}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="small_cnn,mobilenet_v1",
                        help="comma-separated zoo builder names. Default small_cnn,mobilenet_v1.")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per variant. Default 5.")
    parser.add_argument("--num-train", type=int, default=10000, help="images per timed epoch. Default 10000.")
    parser.add_argument("--batch-size", type=int, default=128, help="timing batch size. Default 128.")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (accuracy). Default 3.")
    parser.add_argument("--seeds", default="0,1", help="fine-tuning seeds (accuracy). Default 0,1.")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time one_conv with float weights, float activations, and both float")
    parser.add_argument("--policies", default="",
                        help="accuracy: comma-separated subset of 'uniform 8', 'uniform 4', 'uniform 3', 'mixed'. "
                             "Default all.")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    from tfmpq import data, zoo
    from tfmpq._keras import tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, devices: "
          f"{[d.device_type for d in tf.config.list_physical_devices()]}")
    results: dict = {"timing": [], "command": " ".join(["python -m bench.qat_step"] + (argv or sys.argv[1:]))}
    if not args.skip_timing:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        unknown = [n for n in names if n not in zoo.names()]
        if unknown:
            raise SystemExit(f"Invalid value for `--models`: unknown zoo model(s) {unknown}. Expected names from "
                             f"{zoo.names()}.")
        ds = data.load("default")
        x, y = ds.x_train[: args.num_train], ds.y_train[: args.num_train]
        for name in names:
            res = time_model(name, x, y, args.repeats, args.batch_size, args.breakdown)
            print_timing(res)
            results["timing"].append(res)
    if not args.skip_accuracy:
        only = [p.strip() for p in args.policies.split(",") if p.strip()]
        results["accuracy"] = accuracy(args.epochs, [int(s) for s in args.seeds.split(",")], only=only)
    if args.json:
        from tfmpq._io import write_json_atomic

        write_json_atomic(args.json, results, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
