"""Sensitivity-guided searches against the evolutionary ones at equal weight budgets (issue 15, item 5).

Per model, at the weight bytes of uniform 4-bit and of uniform 3-bit (weights searched, activations
8-bit; ``budget="weight_bytes"``):

* **uniform**: the uniform policy itself;
* **ilp**: Hessian traces (Hutchinson) + the HAWQ-V3 ILP, its ``--ilp-solutions`` best allocations
  scored, the best on validation kept (``tfmpq.search.ilp``);
* **ctpe**: clustered TPE (Azizi et al. 2023), ``--trials`` configurations (``tfmpq.search.ctpe``);
* **bbpso**: BBPSO-Quantizer (LIGPI init), about as many evaluations (``swarm x (iterations + 1)``);
* **nsga2**: one NSGA-II run for both budgets (``--population``, ``--generations``), its best member
  within each budget.

Every choice is made on validation (the search's score); the chosen policies are then scored on the
held-out test split the same way (``--finetune-epochs`` of QAT for each, or, for a ptq-scored model,
calibration only): test accuracy with its 95 % Wilson interval and McNemar's exact test against
uniform. Wall times are the searches' own (evaluations included; the ILP and clustered TPE also count
the Hessian traces, estimated once per model and shared by both budgets, so each is charged in full).

Writes runs/strategies/<model>/bench.json and prints the README rows.

Run:
  python -m bench.strategies --models small_cnn_fmnist
  python -m bench.strategies --models dscnn_fmnist --num-train 2000 --num-val 2000
"""
from __future__ import annotations

import argparse
import os
import time

#: How each model is scored during the search, and the float epochs of the ones trained here.
SETTINGS = {
    "small_cnn_fmnist": {"evaluation": "qat", "finetune_epochs": 2},
    # the depthwise-separable CNN trained on the full Fashion-MNIST (models/dscnn_fmnist.json): scored by
    # post-training quantization on its fixed validation split (--num-val: a subset), tested on 10,000 images
    "dscnn_fmnist": {"evaluation": "ptq", "finetune_epochs": 0},
    "mobilenet_v1": {"evaluation": "ptq", "finetune_epochs": 0, "float_epochs": 3},
}


def load(name: str, num_train: int, seed: int, num_val: int | None = None):
    """(float model, roles) for a shipped zoo checkpoint (on the dataset its record names) or a zoo model
    trained here briefly (cached)."""
    from models import train_demo
    from tfmpq import data, zoo
    from tfmpq._keras import keras

    ds = data.load("default")
    if name in zoo.checkpoints():
        model = zoo.resolve_model(f"zoo:{name}")
        dataset = zoo.checkpoint_info(name).get("dataset", "default")
        if dataset != "default":
            ds = data.load(dataset)
    else:
        path = os.path.join("runs", "strategies", f"{name}_float.keras")
        if os.path.exists(path):
            model = keras.models.load_model(path)
        else:
            model, acc, sec = train_demo.train(name, epochs=SETTINGS[name]["float_epochs"], seed=seed, verbose=0)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            model.save(path)
            print(f"{name}: trained {SETTINGS[name]['float_epochs']} float epochs in {sec:.0f} s, test {acc:.4f}",
                  flush=True)
        if name in train_demo.MIN_SIZE_32:
            ds = data.pad_to(ds, 32)
    return model, data.roles(ds, num_train=num_train, num_val=num_val, seed=seed)


def test_row(ev, policy, test, finetune_epochs: int):
    """Per-sample test correctness of ``policy``: fine-tuned ``finetune_epochs`` (QAT) or calibrated (ptq)."""
    if finetune_epochs:
        _, model = ev.finetune(policy, finetune_epochs, reuse=True)
    else:
        model, _, _ = ev.build(policy, reuse=True)
    return ev.correct(model, test)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.strategies", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="small_cnn_fmnist", help=f"comma-separated, of {sorted(SETTINGS)}")
    p.add_argument("--num-train", type=int, default=4000)
    p.add_argument("--num-val", type=int, default=None,
                   help="a class-balanced subset of the fixed validation split (default: all of it)")
    p.add_argument("--budgets", default="4,3", help="uniform bit-widths whose weight bytes are the budgets")
    p.add_argument("--trials", type=int, default=16, help="clustered TPE configurations (BBPSO: as many)")
    p.add_argument("--ilp-solutions", type=int, default=3)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--probes", type=int, default=32, help="Hutchinson probes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join("runs", "strategies"))
    args = p.parse_args(argv)

    import numpy as np

    from tfmpq import QuantPolicy, metrics, search
    from tfmpq._io import write_json_atomic
    from tfmpq.hessian import hessian_trace
    from tfmpq.search import Evaluator
    from tfmpq.stats import mcnemar, wilson_interval

    rows = []
    for name in args.models.split(","):
        setting = SETTINGS[name]
        model, roles = load(name, args.num_train, args.seed, args.num_val)
        out = os.path.join(args.out, name)
        os.makedirs(out, exist_ok=True)
        ev = Evaluator(model, roles.train, roles.val, evaluation=setting["evaluation"], epochs=1, seed=args.seed)
        t0 = time.perf_counter()
        warm = ev.evaluate(QuantPolicy.uniform(model, 8))  # builds and traces the shared model: not timed below
        print(f"{name}: {len(roles.train[1])} train / {len(roles.val[1])} val / {len(roles.test[1])} test, "
              f"{setting['evaluation']} scoring; uniform 8-bit val {warm.accuracy:.4f} "
              f"(warm-up {time.perf_counter() - t0:.0f} s)", flush=True)
        t0 = time.perf_counter()
        traces = hessian_trace(model, roles.train, num_probes=args.probes, num_samples=512, seed=args.seed)
        sens_s = time.perf_counter() - t0
        print(f"  Hessian traces ({args.probes} probes, 512 samples): {sens_s:.1f} s; "
              + ", ".join(f"{g} {traces.trace[g]:.3g}±{traces.std_error[g]:.2g}" for g in traces.groups[:6])
              + (" ..." if len(traces.groups) > 6 else ""), flush=True)
        t0 = time.perf_counter()
        front_run = search.nsga2(model, evaluator=ev, population=args.population, offspring=args.population,
                                 generations=args.generations, seed=args.seed, verbose=0,
                                 run_dir=os.path.join(out, "nsga2"), overwrite=True)
        nsga_s = time.perf_counter() - t0
        print(f"  nsga2: {len(front_run.candidates)} evaluations, {nsga_s:.0f} s", flush=True)
        swarm = max(2, args.trials // 4)
        iterations = max(0, args.trials // swarm - 1)
        for bits in [int(b) for b in args.budgets.split(",")]:
            uniform = QuantPolicy.uniform(model, bits)
            target = metrics.summary(model, uniform)["weight_bytes"]
            results = {}
            t0 = time.perf_counter()
            cand = ev.evaluate(uniform)
            results["uniform"] = (cand, 1, time.perf_counter() - t0)
            common = dict(evaluator=ev, budget="weight_bytes", target=target, seed=args.seed, verbose=0,
                          overwrite=True)
            t0 = time.perf_counter()
            r = search.ilp(model, solutions=args.ilp_solutions, sensitivity=traces,
                           run_dir=os.path.join(out, f"ilp_u{bits}"), **common)
            results["ilp"] = (r.best, len(r.candidates), sens_s + time.perf_counter() - t0)
            ilp_decision = sens_s + r.history[0]["seconds"] - sum(c.seconds for c in r.candidates)
            t0 = time.perf_counter()
            r = search.ctpe(model, trials=args.trials, sensitivity=traces, run_dir=os.path.join(out, f"ctpe_u{bits}"),
                            **common)
            results["ctpe"] = (r.best, len(r.candidates), sens_s + time.perf_counter() - t0)
            pruned = {g: list(v) for g, v in r.pruned.items()}
            t0 = time.perf_counter()
            r = search.bbpso(model, swarm=swarm, iterations=iterations, local_search=False, search_activations=False,
                             run_dir=os.path.join(out, f"bbpso_u{bits}"), **common)
            results["bbpso"] = (r.best, len(r.candidates), time.perf_counter() - t0)
            within = [c for c in front_run.candidates if c.ok and c.weight_bytes <= target]
            best_nsga = max(within, key=lambda c: (c.accuracy, -c.weight_bytes))
            results["nsga2"] = (best_nsga, len(front_run.candidates), nsga_s)
            hits = {k: test_row(ev, c.policy, roles.test, setting["finetune_epochs"]) for k, (c, _, _) in results.items()}
            n = len(roles.test[1])
            for key, (c, evals, wall) in results.items():
                k = int(np.sum(hits[key]))
                row = {"model": name, "budget_bits": bits, "target_weight_bytes": target, "strategy": key,
                       "genes": list(c.policy.weight_bits), "weight_bytes": c.weight_bytes,
                       "within_budget": bool(c.weight_bytes <= target), "val_accuracy": c.accuracy,
                       "test_accuracy": k / n, "ci": list(wilson_interval(k, n)), "evaluations": evals,
                       "wall_seconds": wall, "evaluation": setting["evaluation"],
                       "finetune_epochs": setting["finetune_epochs"],
                       "mcnemar_vs_uniform": None if key == "uniform" else mcnemar(hits[key], hits["uniform"])["p_value"]}
                if key == "ilp":
                    row["decision_seconds"] = ilp_decision
                if key == "ctpe":
                    row["pruned"] = pruned
                rows.append(row)
                print(f"  u{bits} {key:<7} {row['genes']} {c.weight_bytes:8.0f} B  val {c.accuracy:.4f}  "
                      f"test {k / n:.4f}  evals {evals:3d}  wall {wall:6.0f} s", flush=True)
            print(f"  u{bits}: ilp wall / nsga2 wall = {results['ilp'][2] / nsga_s:.3f}; ilp decision "
                  f"(traces + solve) {ilp_decision:.1f} s", flush=True)
        write_json_atomic(os.path.join(out, "bench.json"),
                          {"rows": [r for r in rows if r["model"] == name], "sensitivity": traces.to_json(),
                           "sensitivity_seconds": sens_s, "nsga2_seconds": nsga_s, "args": vars(args)})
    print("\n| model | budget | strategy | weight bits | weight B | evals | wall s | val | test [95% CI] | McNemar p vs uniform |")
    print("|---|---|---|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        p_value = "" if r["mcnemar_vs_uniform"] is None else f"{r['mcnemar_vs_uniform']:.3g}"
        strategy = r["strategy"] + ("" if r["within_budget"] else " (none within budget)")
        print(f"| {r['model']} | u{r['budget_bits']} ({r['target_weight_bytes']:.0f} B) | {strategy} | "
              f"{','.join(map(str, r['genes']))} | {r['weight_bytes']:.0f} | {r['evaluations']} | {r['wall_seconds']:.0f} | "
              f"{100 * r['val_accuracy']:.2f}% | {100 * r['test_accuracy']:.2f}% [{100 * r['ci'][0]:.2f}, "
              f"{100 * r['ci'][1]:.2f}] | {p_value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
