"""BBPSO-Quantizer under a budget, reported on data that did not choose it.

The digits MLP of the README (Flatten - Dense(32, relu) - Dense(10, softmax), trained in float on
scikit-learn's digits), post-training quantization scoring (calibration, no training), weights and
activations searched (Tmamna et al. 2024's setting). For each budget, equal to the ``avg_op_bits`` of a
uniform policy (so the uniform baseline is chosen by its cost, not by an accuracy):
  1. BBPSO on the validation split (a fixed 10 % of the training split) picks its best policy;
  2. that policy and the uniform one are calibrated alike and scored on the held-out test split:
     accuracy with a 95 % Wilson interval, and McNemar's exact test of the paired predictions.

Run: python -m bench.bbpso_budget [--uniform 4 3] [--swarm 15] [--iterations 20] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import time


def train_mlp(x, y, seed: int = 0):
    """The README's digits MLP, trained 15 epochs in float (seeded)."""
    from tfmpq._keras import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.layers.Input(x.shape[1:]), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ], name="digits_mlp")
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bbpso_budget", description=__doc__.splitlines()[0])
    p.add_argument("--uniform", type=int, nargs="+", default=[4, 3],
                   help="budgets: the avg_op_bits of uniform wBaB for each B")
    p.add_argument("--swarm", type=int, default=15)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bbpso_budget")
    args = p.parse_args(argv)

    from tfmpq import QuantPolicy, data, search
    from tfmpq.search import Evaluator
    from tfmpq.stats import mcnemar, wilson_interval

    roles = data.roles(data.load("digits"))
    model = train_mlp(*roles.train, seed=args.seed)
    ev = Evaluator(model, roles.train, roles.val, evaluation="ptq", seed=args.seed)
    x_test, y_test = roles.test
    n = len(y_test)

    def test_hits(policy):
        qat, _, _ = ev.build(policy, evaluation="ptq")
        return ev.correct(qat, roles.test)

    float_hits = ev.correct(model, roles.test)
    rows = []
    for b in args.uniform:
        uniform = QuantPolicy.uniform(model, weight_bits=b, activation_bits=b)
        target = ev.metrics(uniform)["avg_op_bits"]
        start = time.perf_counter()
        result = search.bbpso(model, roles.train, roles.val, evaluator=ev, evaluation="ptq", budget="avg_op_bits",
                              target=target, swarm=args.swarm, iterations=args.iterations, seed=args.seed,
                              run_dir=os.path.join(args.out, f"w{b}a{b}"), overwrite=True, verbose=0)
        seconds = time.perf_counter() - start
        best = result.best
        hb, hu = test_hits(best.policy), test_hits(uniform)
        row = {
            "budget": f"avg_op_bits <= {target:.3f} (uniform w{b}a{b})", "target": target,
            "evaluations": len(result.candidates), "seconds": seconds,
            "best": {"weight_bits": list(best.policy.weight_bits), "activation_bits": list(best.policy.activation_bits),
                     "avg_op_bits": best.metrics["avg_op_bits"], "val_accuracy": best.accuracy,
                     "test_accuracy": float(hb.mean()), "ci": wilson_interval(int(hb.sum()), n)},
            "uniform": {"val_accuracy": ev.evaluate(uniform).accuracy, "test_accuracy": float(hu.mean()),
                        "ci": wilson_interval(int(hu.sum()), n)},
            "mcnemar": mcnemar(hb, hu),
            "compression_ratio_eq9": best.metrics["compression_ratio_eq9"],
        }
        rows.append(row)
        print(json.dumps(row, default=float), flush=True)
    out = {"float_test_accuracy": float(float_hits.mean()), "num_test": n, "roles": roles.description, "rows": rows}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, default=float)
    print(f"\nfloat MLP test accuracy {100 * out['float_test_accuracy']:.2f}% on {n} test images")
    print("| budget | evaluations | wall | BBPSO best (w / a bits) | its avg op bits | BBPSO test | uniform test | "
          "McNemar p |")
    for r in rows:
        bb, u = r["best"], r["uniform"]
        print(f"| {r['budget']} | {r['evaluations']} | {r['seconds']:.0f} s | {bb['weight_bits']} / "
              f"{bb['activation_bits']} | {bb['avg_op_bits']:.2f} | {100 * bb['test_accuracy']:.2f}% "
              f"[{100 * bb['ci'][0]:.1f}, {100 * bb['ci'][1]:.1f}] | {100 * u['test_accuracy']:.2f}% "
              f"[{100 * u['ci'][0]:.1f}, {100 * u['ci'][1]:.1f}] | {r['mcnemar']['p_value']:.3g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
