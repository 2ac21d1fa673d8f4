"""Search speed: what one candidate evaluation costs, rebuilt per candidate vs. tfmpq's reused model.

Times, on the same model, data and epochs, in one run:
  (a) float training of the same steps (the floor: what training alone costs),
  (b) the per-candidate rebuild approach (quantize_apply + compile + trace for every policy, the
      reference approach of Šafář),
  (c) tfmpq's evaluator (one variable-bit QAT model, built and traced once per search),
over the same policies, and prints the ratios (c)/(a) and (b)/(c). Also: ptq seconds per candidate,
the per-candidate overhead on Keras Applications MobileNet (alpha 0.25, 32x32), and peak RSS at the
start and end of a series of evaluations.

Run: python -m bench.search_speed [--policies 8] [--num-train 10000] [--memory-evals 50] [--skip-rebuild]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np


def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _policies(model, n: int, seed: int):
    from tfmpq import QuantPolicy, quantizable_groups

    rng = np.random.default_rng(seed)
    groups = quantizable_groups(model)
    out = [QuantPolicy.uniform(model, b, 8) for b in (8, 4)]
    while len(out) < n:
        out.append(QuantPolicy.from_bits(model, [int(b) for b in rng.integers(2, 9, len(groups))], 8))
    return out[:n]


def time_float(model, train, val, epochs: int, batch_size: int, n: int, seed: int) -> tuple[float, float]:
    """(a): (wall, CPU) seconds for `n` float fits of `epochs` epochs (same steps and validation as a candidate)."""
    from tfmpq._keras import keras, tf

    keras.utils.set_random_seed(seed)
    m = keras.models.clone_model(model)
    m.set_weights(model.get_weights())
    m.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(), ["accuracy"])
    x, y = train
    base = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    val_ds = tf.data.Dataset.from_tensor_slices(val).batch(512).cache()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        m.fit(base.shuffle(len(x), seed=seed).batch(batch_size), epochs=epochs, validation_data=val_ds, verbose=0)
    return time.perf_counter() - start, time.process_time() - cpu


def time_evaluator(model, train, val, policies, reuse: bool, evaluation: str = "qat", epochs: int = 1,
                   seed: int = 0) -> tuple[float, list, float]:
    """(b) / (c): (wall seconds, candidates, CPU seconds) for scoring `policies` with a fresh Evaluator
    (its construction included). CPU seconds (this process, both cores) do not see the wall clock's
    stalls on this project's VMs (multiples of 10.24 s)."""
    from tfmpq.search import Evaluator

    start, cpu = time.perf_counter(), time.process_time()
    ev = Evaluator(model, train, val, evaluation=evaluation, epochs=epochs, seed=seed, reuse_model=reuse)
    candidates = [ev.evaluate(p) for p in policies]
    return time.perf_counter() - start, candidates, time.process_time() - cpu


def mobilenet_overhead(num_samples: int = 512, n: int = 4, seed: int = 0) -> dict:
    """Per-candidate overhead (everything but the fit steps and validation) on MobileNet 0.25, 32x32."""
    from tfmpq._keras import keras
    from tfmpq.search import Evaluator

    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNet(weights=None, alpha=0.25, input_shape=(32, 32, 3), classes=10)
    rng = np.random.default_rng(seed)
    x = rng.random((num_samples, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, num_samples)
    policies = _policies(model, n + 1, seed)
    out = {}
    for reuse in (False, True):
        ev = Evaluator(model, (x, y), (x[:128], y[:128]), evaluation="qat", epochs=1, seed=seed, reuse_model=reuse)
        ev.evaluate(policies[0])  # warm-up: the one-time build of the reused model is not per-candidate
        overheads = []
        for p in policies[1:]:
            c = ev.evaluate(p)
            overheads.append(c.seconds - c.info["step_seconds"])
        out["reuse" if reuse else "rebuild"] = float(np.mean(overheads))
    return out


def _main_comparison(model, train, val, policies, epochs: int, rebuild: bool = True) -> dict:
    """(a), (b), (c) and ptq on the same model, data, epochs and policies; prints and returns the times.
    Without `rebuild`, (b) is left out (it only compares (c) with the rebuild approach)."""
    n = len(policies)
    a, a_cpu = time_float(model, train, val, epochs, 64, n, 0)
    print(f"(a) float training        {a:8.1f} s  ({a / n:.2f} s per candidate), CPU {a_cpu:.1f} s")
    if rebuild:
        b, cands_b, _ = time_evaluator(model, train, val, policies, reuse=False, epochs=epochs)
        print(f"(b) rebuild per candidate {b:8.1f} s  ({b / n:.2f} s per candidate)")
    c, cands_c, c_cpu = time_evaluator(model, train, val, policies, reuse=True, epochs=epochs)
    print(f"(c) tfmpq evaluator       {c:8.1f} s  ({c / n:.2f} s per candidate), CPU {c_cpu:.1f} s; "
          f"(c)/(a) in CPU seconds = {c_cpu / a_cpu:.2f}")
    out = {"float_s": a, "tfmpq_s": c, "policies": n, "num_train": len(train[0]), "epochs": epochs, "c_over_a": c / a,
           "float_cpu_s": a_cpu, "tfmpq_cpu_s": c_cpu, "c_over_a_cpu": c_cpu / a_cpu}
    if rebuild:
        diffs = [abs(p.accuracy - q.accuracy) for p, q in zip(cands_b, cands_c)]
        print(f"ratios: (c)/(a) = {c / a:.2f} (target <= 1.3), (b)/(c) = {b / c:.2f} (target >= 1.5); "
              f"max |acc(b) - acc(c)| over the policies = {max(diffs):.4f}")
        out.update(rebuild_s=b, b_over_c=b / c, max_accuracy_difference=max(diffs))
    else:
        print(f"ratio: (c)/(a) = {c / a:.2f} (target <= 1.3)")
    p, _, _ = time_evaluator(model, train, val, policies, reuse=True, evaluation="ptq")
    print(f"ptq evaluation: {p / n:.2f} s per candidate (evaluator construction included)")
    out["ptq_s_per_candidate"] = p / n
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", type=int, default=8, help="policies per approach (>= 8). Default 8.")
    parser.add_argument("--num-train", type=int, default=10000, help="training images per epoch. Default 10000.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--memory-evals", type=int, default=50, help="evaluations for the RSS check. Default 50.")
    parser.add_argument("--skip-mobilenet", action="store_true")
    parser.add_argument("--skip-main", action="store_true", help="skip (a)/(b)/(c) and ptq on the demo model")
    parser.add_argument("--skip-rebuild", action="store_true", help="skip (b), the rebuild-per-candidate approach")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    from tfmpq import data, zoo
    from tfmpq._keras import tf

    print(f"TensorFlow {tf.__version__}, devices: {[d.device_type for d in tf.config.list_physical_devices()]}")
    ds = data.load("default")
    (x, y), (xv, yv) = data.split_validation(ds, 0.1, seed=0)
    x, y = x[: args.num_train], y[: args.num_train]
    model = zoo.resolve_model("zoo:small_cnn_fmnist")
    policies = _policies(model, args.policies, 0)
    n = len(policies)
    print(f"demo model {model.name}: {len(x)} training images, {len(xv)} validation, {args.epochs} epoch(s), "
          f"{n} policies")

    results = {}
    if not args.skip_main:
        results = _main_comparison(model, (x, y), (xv, yv), policies, args.epochs, rebuild=not args.skip_rebuild)

    if not args.skip_mobilenet:
        mob = mobilenet_overhead()
        print(f"MobileNet 0.25 32x32 per-candidate overhead: rebuild {mob['rebuild']:.2f} s, "
              f"tfmpq {mob['reuse']:.2f} s (target <= 1 s)")
        results["mobilenet_overhead_s"] = mob

    if args.memory_evals:
        from tfmpq.search import Evaluator

        small = (x[:512], y[:512])
        ev = Evaluator(model, small, (xv[:256], yv[:256]), evaluation="qat", epochs=1, seed=0, reuse_model=True)
        many = _policies(model, args.memory_evals, 1)
        ev.evaluate(many[0])
        rss_start = _rss_mib()
        for pol in many[1:]:
            ev.evaluate(pol)
        rss_end = _rss_mib()
        print(f"peak RSS over {len(many)} evaluations: {rss_start:.0f} MiB after the first, {rss_end:.0f} MiB "
              f"after the last")
        results["rss_mib"] = {"start": rss_start, "end": rss_end, "evaluations": len(many)}
    if args.json:
        from tfmpq._io import write_json_atomic

        write_json_atomic(args.json, results, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
