"""Executor speed: the same NSGA-II search evaluated serially, on local worker processes and on Ray.

Runs one search (demo model ``zoo:small_cnn_fmnist`` on the embedded Fashion-MNIST subset, QAT
evaluation by default) once per executor with the same seed, and prints per executor: the search's
wall time (worker start-up included, and shown apart: spawning the workers, importing TensorFlow,
rebuilding the model), the candidates it evaluated, the speed-up over serial, and
whether its front and scores equal the serial run's. On a machine with C cores, serial TensorFlow
already uses all C for one candidate; N workers use C/N each, so the speed-up measures how much
better N small jobs fill the cores than one large one (expect little with 2 cores).

QAT scores depend on TensorFlow's intra-op thread count (the order of float sums on CPU), not on the
executor: with ``--serial-threads`` equal to the workers' threads (CPUs / workers) they are identical.

Run: python -m bench.executor_speed [--workers 2] [--executors serial,process,ray] [--num-train 4000]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _fingerprint(result) -> tuple:
    front = [(c.genes, c.accuracy) for c in result.front]
    scores = sorted((c.genes, c.accuracy) for c in result.candidates)
    return front, scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.executor_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--executors", default="serial,process,ray", help="comma-separated. Default: all three")
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel executors. Default: 2")
    parser.add_argument("--evaluation", choices=("qat", "ptq"), default="qat")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--offspring", type=int, default=8)
    parser.add_argument("--generations", type=int, default=1)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray only")
    parser.add_argument("--serial-threads", type=int, default=0,
                        help="TensorFlow threads of this process (the serial run); 0: TensorFlow's default. "
                             "QAT scores are bit-identical across executors when this equals the workers' threads")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.serial_threads:
        from tfmpq.evaluate import configure_tensorflow

        configure_tensorflow(args.serial_threads)  # before TensorFlow's first op

    from tfmpq import data, search, zoo
    from tfmpq._keras import tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, devices: "
          f"{[d.device_type for d in tf.config.list_physical_devices()]}")
    ds = data.load("default")
    (x, y), val = data.split_validation(ds, 0.1, seed=0)
    train = (x[: args.num_train], y[: args.num_train])
    model = zoo.resolve_model("zoo:small_cnn_fmnist")
    kw = dict(evaluation=args.evaluation, epochs=args.epochs, population=args.population, offspring=args.offspring,
              generations=args.generations, seed=0, verbose=0)
    print(f"NSGA-II on {model.name}: {len(train[1])} training / {len(val[1])} validation images, "
          f"{args.evaluation}" + (f" {args.epochs} epoch(s)" if args.evaluation == "qat" else "")
          + f", population {args.population}, offspring {args.offspring}, {args.generations} generation(s)")

    rows, reference = [], None
    for name in [e.strip() for e in args.executors.split(",") if e.strip()]:
        options = {} if name == "serial" else {"workers": args.workers}
        if name == "ray" and args.gpus_per_worker:
            options["gpus_per_worker"] = args.gpus_per_worker
        start = time.perf_counter()
        evaluator = search.Evaluator(model, train, val, evaluation=args.evaluation, epochs=args.epochs, seed=0)
        with search.get_executor(name, **options) as executor:
            executor.ensure_started(evaluator)  # workers spawned, TensorFlow imported, model rebuilt
            started = time.perf_counter() - start
            result = search.nsga2(model, evaluator=evaluator, executor=executor, **kw)
        seconds = time.perf_counter() - start
        fp = _fingerprint(result)
        reference = reference or (fp if name == "serial" else None)
        per_candidate = sorted(c.seconds for c in result.candidates)
        row = {"executor": name, "workers": executor.workers, "seconds": seconds, "start_seconds": started,
               "evaluated": result.num_evaluated, "seconds_per_candidate": seconds / max(1, result.num_evaluated),
               "slowest_candidate_seconds": per_candidate[-1],
               "median_candidate_seconds": per_candidate[len(per_candidate) // 2],
               "same_front_as_serial": None if reference is None else fp[0] == reference[0],
               "same_scores_as_serial": None if reference is None else fp[1] == reference[1]}
        rows.append(row)
        print(f"{name:8s} x{row['workers']}: {seconds:7.1f} s (start {started:.1f} s), {row['evaluated']} candidates, "
              f"{row['seconds_per_candidate']:.2f} s/candidate (median {row['median_candidate_seconds']:.1f} s, "
              f"slowest {row['slowest_candidate_seconds']:.1f} s: a first build and trace), same front as serial: "
              f"{row['same_front_as_serial']}, same scores: {row['same_scores_as_serial']}", flush=True)
    serial = next((r for r in rows if r["executor"] == "serial"), None)
    if serial is not None:
        for r in rows:
            r["speedup"] = serial["seconds"] / r["seconds"]
        print("speed-up over serial: " + ", ".join(f"{r['executor']} x{r['workers']} {r['speedup']:.2f}" for r in rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
