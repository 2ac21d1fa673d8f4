"""Does the searched front beat uniform quantization? NSGA-II on validation, the comparison on held-out test.

One run per model (issue 12, item 7):
  1. the data in three roles (`tfmpq.data.roles`): the search's training subset, the fixed validation
     split the float checkpoint was never trained on, the test split (reporting only);
  2. the scoring noise: uniform 8-bit and uniform 4-bit scored with `--noise-seeds` different evaluator
     seeds (data order), the spread of one candidate's score;
  3. NSGA-II (QAT-scored candidates, `--epochs` each) on validation;
  4. `Result.compare_with_uniform(test=...)`: every policy and the float model fine-tuned
     `--finetune-epochs` alike, chosen on validation, test accuracy with 95 % Wilson intervals, the
     saving in weight bytes and McNemar's exact p-value.

Writes RUN_DIR (the search, resumable) and RUN_DIR/bench.json, and prints one Markdown row per model
for the README.

Run:
  python -m bench.front_vs_uniform --model zoo:small_cnn_fmnist --data default --num-train 4000
  python -m bench.front_vs_uniform --model zoo:dscnn_fmnist --data fashion_mnist --num-train 10000
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.front_vs_uniform", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="zoo:small_cnn_fmnist")
    p.add_argument("--data", default="default")
    p.add_argument("--num-train", type=int, default=4000, help="training images per candidate (a fixed subset)")
    p.add_argument("--num-val", type=int, default=None, help="validation images (default: the whole fixed split)")
    p.add_argument("--epochs", type=int, default=1, help="QAT epochs per search candidate")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--bits", default="2,3,4,5,6,7,8")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--tolerance", type=float, default=0.005)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--noise-seeds", type=int, default=3, help="evaluator seeds for the noise of one score")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None, help="default: runs/front_vs_uniform/<model>")
    args = p.parse_args(argv)

    from tfmpq import QuantPolicy, data, metrics, search, zoo
    from tfmpq.search import Evaluator

    start = time.perf_counter()
    name = args.model.split(":")[-1]
    run_dir = args.run_dir or os.path.join("runs", "front_vs_uniform", name)
    ds = data.load(args.data)
    info = zoo.checkpoint_info(name) if name in zoo.checkpoints() else None
    val_fraction = info["validation"]["fraction"] if info and info["dataset"] == ds.name else data.VALIDATION_FRACTION
    roles = data.roles(ds, val_fraction=val_fraction, num_train=args.num_train, num_val=args.num_val, seed=args.seed)
    model = zoo.resolve_model(args.model)
    print(f"{args.model} on {ds.name}: {len(roles.train[1])} training / {len(roles.val[1])} validation / "
          f"{len(roles.test[1])} test images", flush=True)
    options = dict(evaluation="qat", epochs=args.epochs, learning_rate=args.learning_rate)

    # The noise of one score: the same policy, another data order.
    noise = {}
    for bits in (8, 4):
        policy = QuantPolicy.uniform(model, bits, 8)
        scores = [Evaluator(model, roles.train, roles.val, seed=s, **options).evaluate(policy).accuracy
                  for s in range(args.noise_seeds)]
        noise[f"{bits}-bit"] = {"scores": scores, "sd": statistics.stdev(scores) if len(scores) > 1 else None}
        print(f"scoring noise, uniform {bits}-bit: {[round(100 * a, 2) for a in scores]} %", flush=True)

    resume = os.path.exists(os.path.join(run_dir, "checkpoint.json"))
    t_search = time.perf_counter()
    result = search.nsga2(model, roles.train, roles.val, population=args.population, offspring=args.population,
                          generations=args.generations, bits=tuple(int(b) for b in args.bits.split(",")),
                          run_dir=run_dir, resume=resume, seed=args.seed, **options)
    search_seconds = time.perf_counter() - t_search
    cmp = result.compare_with_uniform(test=roles.test, finetune_epochs=args.finetune_epochs,
                                      tolerance=args.tolerance)
    float_bytes = metrics.summary(model, QuantPolicy.uniform(model, 8))["float_weight_bytes"]
    out = {
        "model": args.model, "data": ds.name, "roles": roles.description, "options": vars(args),
        "num_candidates": len(result.candidates), "front_size": len(result.front),
        "search_seconds": search_seconds, "compare_seconds": cmp["seconds"],
        "total_seconds": time.perf_counter() - start, "noise": noise, "float_weight_bytes": float_bytes,
        "comparison": _jsonable(cmp),
    }
    with open(os.path.join(run_dir, "bench.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, default=list)
    print(f"\nwrote {os.path.join(run_dir, 'bench.json')}")
    print(markdown_row(out))
    return 0


def _jsonable(cmp: dict) -> dict:
    from tfmpq.search.compare import comparison_to_json

    return comparison_to_json(cmp)


def markdown_row(out: dict) -> str:
    """| model | candidates | u8 test | target | uniform chosen | front chosen | saving | McNemar p | noise |"""
    c = out["comparison"]

    def side(r):
        if r is None:
            return "none"
        lo, hi = r["ci"]
        bits = ",".join(map(str, r["policy"]["weight_bits"]))
        return (f"{r['label'] or bits}: {r['cost'] / 1024:.2f} KiB, {100 * r['test_accuracy']:.2f}% "
                f"[{100 * lo:.1f}, {100 * hi:.1f}]")

    sd = out["noise"].get("4-bit", {}).get("sd")
    saving = "n/a" if c["saving"] is None else f"{100 * c['saving']:.1f}%"
    p = "n/a" if not c.get("mcnemar") else f"{c['mcnemar']['p_value']:.3g}"
    return (f"| {out['model']} | {out['num_candidates']} | {100 * c['float']['test_accuracy']:.2f}% | "
            f"{100 * c['uniform8']['test_accuracy']:.2f}% | {100 * c['target_accuracy']:.2f}% | {side(c['uniform'])} | "
            f"{side(c['front'])} | {saving} | {p} | {'n/a' if sd is None else f'{100 * sd:.2f} pp'} |")


if __name__ == "__main__":
    raise SystemExit(main())
