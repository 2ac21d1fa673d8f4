"""`make demo`: a real mixed-precision search on the embedded Fashion-MNIST subset, end to end.

1. loads the shipped float demo CNN (`zoo:small_cnn_fmnist`) and the embedded Fashion-MNIST subset;
2. runs NSGA-II over the per-group weight bits (accuracy vs. weight bytes), each candidate scored by
   one epoch of QAT on a training subset, and writes the Pareto plot;
3. picks up to three models from the front (the most accurate, the smallest within 1 pp and within
   3 pp of it), fine-tunes them, exports each to a full-integer .tflite (plus a C array of the smallest),
   and measures their test accuracy on the real LiteRT and TFLite Micro interpreters.

Everything is the public API; the run directory is resumable (`python -m tfmpq.demo` again continues).
Run: python -m tfmpq.demo [--run-dir runs/demo] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _pick(front):
    """The most accurate member, and the smallest within 1 pp and within 3 pp of it."""
    ok = [c for c in front if c.ok]
    best = max(ok, key=lambda c: (c.accuracy, -c.weight_bytes))
    near = [min((c for c in ok if c.accuracy >= best.accuracy - tol), key=lambda c: c.weight_bytes)
            for tol in (0.01, 0.03)]
    chosen = []
    for c in [best] + near:
        if all(c.genes != d.genes for d in chosen):
            chosen.append(c)
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfmpq.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default="runs/demo", help="where the run writes everything. Default runs/demo.")
    parser.add_argument("--quick", action="store_true", help="a tiny search (CI smoke test), not the real demo")
    parser.add_argument("--fresh", action="store_true", help="start a new run even if --run-dir holds one")
    args = parser.parse_args(argv)

    import tfmpq
    from tfmpq import data, search, zoo
    from tfmpq.export import evaluate_tflite, write_c_array

    t0 = time.perf_counter()
    if args.quick:
        num_train, population, generations, finetune_epochs = 1000, 6, 1, 1
    else:
        num_train, population, generations, finetune_epochs = 4000, 10, 5, 3
    ds = data.load("default")
    (x_tr, y_tr), (x_val, y_val) = data.split_validation(ds, 0.1, seed=0)
    model = zoo.resolve_model("zoo:small_cnn_fmnist")
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    float_acc = model.evaluate(ds.x_test, ds.y_test, verbose=0)[1]
    print(f"float model {model.name}: {model.count_params():,} params, test accuracy {100 * float_acc:.2f}%")
    print(tfmpq.graph.groups_table(tfmpq.quantizable_groups(model)))

    resume = os.path.exists(os.path.join(args.run_dir, "checkpoint.json")) and not args.fresh
    result = search.nsga2(
        model, (x_tr[:num_train], y_tr[:num_train]), (x_val, y_val), evaluation="qat", epochs=1,
        population=population, offspring=population, generations=generations, run_dir=args.run_dir,
        resume=resume, overwrite=args.fresh, seed=0, learning_rate=1e-4,
    )
    print(f"Pareto plot: {os.path.join(args.run_dir, 'pareto.png')}")

    chosen = _pick(result.front)
    print(f"fine-tuning {len(chosen)} front members for {finetune_epochs} epoch(s) on {num_train} images")
    result.finetune(finetune_epochs, members=chosen)
    export_dir = os.path.join(args.run_dir, "export")
    reports = result.export(export_dir, representative_data=x_tr[:256], int8_io=True)
    rows = []
    for (cand, qat), report in zip(result.finetuned, reports):
        qat.compile(loss=model.loss, metrics=["accuracy"])
        keras_acc = qat.evaluate(ds.x_test, ds.y_test, verbose=0)[1]
        lrt = evaluate_tflite(report.path, ds.x_test, ds.y_test, runtime="litert")
        mcu = evaluate_tflite(report.path, ds.x_test, ds.y_test, runtime="tflm")
        rows.append({"weight_bits": list(cand.policy.weight_bits), "keras_qat": keras_acc, "litert": lrt,
                     "tflm": mcu, "file_bytes": report.file_bytes,
                     "packed_weight_bytes": report.packed_weight_bytes, "path": report.path})
    smallest = min(rows, key=lambda r: r["packed_weight_bytes"])
    write_c_array(smallest["path"], "model_data", export_dir)

    print(f"\n{'weight bits':<22} {'Keras QAT':>9} {'LiteRT':>8} {'TFLM':>8} {'.tflite B':>10} {'packed B':>9}")
    for r in rows:
        print(f"{','.join(map(str, r['weight_bits'])):<22} {100 * r['keras_qat']:8.2f}% {100 * r['litert']:7.2f}% "
              f"{100 * r['tflm']:7.2f}% {r['file_bytes']:10,} {r['packed_weight_bytes']:9,.0f}")
    print(f"(float model: {100 * float_acc:.2f}% on the same {len(ds.y_test)} test images)")
    with open(os.path.join(args.run_dir, "demo.json"), "w") as f:
        json.dump({"float_accuracy": float_acc, "models": rows, "seconds": time.perf_counter() - t0}, f, indent=2)
    print(f"C array of the smallest model: {os.path.join(export_dir, 'model_data.h')} / .cc")
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; everything is in {args.run_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
