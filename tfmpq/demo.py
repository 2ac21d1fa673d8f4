"""`make demo`: a real mixed-precision search on the embedded Fashion-MNIST subset, reported honestly.

1. loads the shipped float demo CNN (`zoo:small_cnn_fmnist`) and the embedded Fashion-MNIST subset in
   three roles (`tfmpq.data.roles`): training images for QAT, the fixed 1,000-image validation split
   the checkpoint was never trained on (every choice), the 2,000 test images (reporting only);
2. runs NSGA-II over the per-group weight bits (accuracy vs. weight bytes), each candidate scored by
   one epoch of QAT, and writes the Pareto plot;
3. compares the front with uniform quantization the only fair way (`Result.compare_with_uniform`):
   every policy and the float model fine-tuned alike, the policies chosen on validation, the test
   accuracies reported with 95 % intervals and McNemar's paired test;
4. asks the microcontroller question at three budgets between uniform 2- and 5-bit
   (`Result.compare_at_budgets`): the most accurate front member that fits against the largest uniform
   policy that fits, fine-tuned alike (the default recipe), chosen on validation, scored on test, and
   draws `budget_curve.png`;
5. exports the chosen front member, the chosen uniform policy and uniform 8-bit to full-integer
   .tflite files (plus a C array of the smallest) and measures their test accuracy on the real LiteRT
   and TFLite Micro interpreters.

Everything is the public API; the run directory is resumable (`python -m tfmpq.demo` again continues).
Run: python -m tfmpq.demo [--run-dir runs/demo] [--seed 0] [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfmpq.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default="runs/demo", help="where the run writes everything. Default runs/demo.")
    parser.add_argument("--quick", action="store_true", help="a tiny search (CI smoke test), not the real demo")
    parser.add_argument("--fresh", action="store_true", help="start a new run even if --run-dir holds one")
    parser.add_argument("--seed", type=int, default=0,
                        help="the search's seed, the training subset and every fine-tune's data order. Default 0.")
    args = parser.parse_args(argv)

    import tfmpq
    from tfmpq import data, report, search, zoo
    from tfmpq.search import store
    from tfmpq._io import write_json_atomic
    from tfmpq.accuracy import model_accuracy
    from tfmpq.export import write_c_array
    from tfmpq.export.models import export_models
    from tfmpq.recipe import FinetuneRecipe
    from tfmpq.search.budgets import budgets_to_json
    from tfmpq.stats import wilson_interval

    t0 = time.perf_counter()
    if args.quick:
        num_train, population, generations, finetune_epochs = 1000, 6, 1, 1
    else:
        num_train, population, generations, finetune_epochs = 4000, 10, 5, 3
    roles = data.roles(data.load("default"), num_train=num_train, seed=args.seed)
    (x_tr, y_tr), (x_val, y_val), (x_test, y_test) = roles.train, roles.val, roles.test
    model = zoo.resolve_model("zoo:small_cnn_fmnist")
    float_acc = model_accuracy(model, x_test, y_test)
    print(f"float model {model.name}: {model.count_params():,} params, test accuracy {100 * float_acc:.2f}% "
          f"(as shipped); {len(y_tr)} training / {len(y_val)} validation / {len(y_test)} test images")
    print(tfmpq.graph.groups_table(tfmpq.quantizable_groups(model)))

    resume = os.path.exists(os.path.join(args.run_dir, store.CHECKPOINT)) and not args.fresh
    result = search.nsga2(
        model, (x_tr, y_tr), (x_val, y_val), evaluation="qat", epochs=1,
        population=population, offspring=population, generations=generations, run_dir=args.run_dir,
        resume=resume, overwrite=args.fresh, seed=args.seed, learning_rate=1e-4,
    )
    report.write_plots(result)
    print(f"Pareto plot (validation scores): {os.path.join(args.run_dir, store.PARETO_PLOT)}")

    cmp = result.compare_with_uniform(test=(x_test, y_test), finetune_epochs=finetune_epochs, keep_models=True)
    # the microcontroller's question: the most accurate model under a budget, at three budgets between uniform 2 and 5 bits
    budgets = result.compare_at_budgets(test=(x_test, y_test), num_budgets=3,
                                        recipe=FinetuneRecipe(epochs=1) if args.quick else FinetuneRecipe())
    report.plot_budget_curve(budgets_to_json(budgets), os.path.join(args.run_dir, store.BUDGET_PLOT))
    print(f"budget curve: {os.path.join(args.run_dir, store.BUDGET_PLOT)}")
    export_dir = os.path.join(args.run_dir, "export")
    items = []
    for role in ("front", "uniform", "uniform8"):
        chosen, qat = cmp[role], cmp["models"].get(role)
        if chosen is None or qat is None or any(d["genes"] == chosen["genes"] for _, _, d in items):
            continue
        items.append((f"{role}_{'-'.join(map(str, chosen['policy'].weight_bits))}", qat,
                      {"role": role, "genes": chosen["genes"], "weight_bits": list(chosen["policy"].weight_bits),
                       "weight_bytes": chosen["cost"]}))
    exported = export_models(items, export_dir, x_tr[:256], test=(x_test, y_test), runtimes=("litert", "tflm"))
    rows = [{k: v for k, v in r.items() if k not in ("report", "accuracy", "keras_accuracy")}
            | {"keras_qat": r["keras_accuracy"], "litert": r["accuracy"]["litert"], "tflm": r["accuracy"]["tflm"],
               "file_bytes": r["report"].file_bytes, "packed_weight_bytes": r["report"].packed_weight_bytes,
               "path": r["report"].path} for r in exported]
    smallest = min(rows, key=lambda r: r["packed_weight_bytes"])
    write_c_array(smallest["path"], "model_data", export_dir)

    n = len(y_test)
    ci = lambda acc: "[{:.1f}, {:.1f}]".format(*(100 * v for v in wilson_interval(round(acc * n), n)))  # noqa: E731
    print(f"\nexported, on the {n} test images (95% Wilson intervals; LiteRT and TFLite Micro run the .tflite):")
    print(f"{'chosen as':<10} {'weight bits':<14} {'weight KiB':>10} {'Keras QAT':>9} {'interval':>13} "
          f"{'LiteRT':>8} {'TFLM':>8} {'.tflite B':>10}")
    for r in rows:
        print(f"{r['role']:<10} {','.join(map(str, r['weight_bits'])):<14} {r['weight_bytes'] / 1024:10.2f} "
              f"{100 * r['keras_qat']:8.2f}% {ci(r['keras_qat']):>13} {100 * r['litert']:7.2f}% "
              f"{100 * r['tflm']:7.2f}% {r['file_bytes']:10,}")
    print(f"(float model fine-tuned alike: {100 * cmp['float']['test_accuracy']:.2f}% {ci(cmp['float']['test_accuracy'])})")
    write_json_atomic(os.path.join(args.run_dir, "demo.json"),  # the demo's own record, beside the run's files
                      {"seed": args.seed, "float_accuracy": float_acc, "comparison_saving": cmp["saving"],
                       "mcnemar_p": (cmp["mcnemar"] or {}).get("p_value"), "models": rows,
                       "budgets": [{"budget": r["budget"], "gain": r["gain"], "p_value": r["p_value"],
                                    "front": None if r["front"] is None else list(r["front"]["genes"]),
                                    "uniform": None if r["uniform"] is None else r["uniform"]["label"]}
                                   for r in budgets["rows"]], "budget_mean_gain": budgets["mean_gain"],
                       "seconds": time.perf_counter() - t0}, indent=2, default=list)
    print(f"C array of the smallest model: {os.path.join(export_dir, 'model_data.h')} / .cc")
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; everything is in {args.run_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
