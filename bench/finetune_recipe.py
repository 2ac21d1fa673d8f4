"""Which fine-tune recipe? Accuracy against epochs for a policy with a 2-bit group and uniform ones, with a
constant or a cosine learning rate, with and without distillation from the float model (issue 24, item 4).

Every (policy, recipe, epochs) is one ``Evaluator.finetune(policy, recipe=FinetuneRecipe(...))`` from the
float checkpoint on the same training images, seed and data order; its validation accuracy (the best epoch's,
as every fine-tune reports) is what the default is chosen by, its test accuracy (the 10,000 held-out images)
is reported beside it. Results are cached in ``--out`` after each run, so a killed bench resumes.

Run (the README's table):
  python -m bench.finetune_recipe --model zoo:dscnn_fmnist --num-train 15000 --epochs 1,3,8
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import time

RECIPES = {  # name: (schedule, distill)
    "constant": ("constant", False),
    "constant+distill": ("constant", True),
    "cosine": ("cosine", False),
    "cosine+distill": ("cosine", True),
}


def parse_policy(spec: str, groups) -> tuple[str, tuple[int, ...]]:
    """``"uniform 3"``, ``"largest 2 rest 4"`` or ``"4,4,2,..."`` -> (label, weight bits per group)."""
    words = spec.split()
    if words[0] == "uniform":
        return spec, (int(words[1]),) * len(groups)
    if words[0] == "largest":  # the largest group at one width, the others at another
        largest = max(range(len(groups)), key=lambda i: groups[i].params)
        bits = [int(words[3])] * len(groups)
        bits[largest] = int(words[1])
        return spec, tuple(bits)
    bits = tuple(int(b) for b in spec.split(","))
    if len(bits) != len(groups):
        raise SystemExit(f"--policies: {spec!r} has {len(bits)} bit-widths, the model has {len(groups)} groups")
    return spec, bits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.finetune_recipe", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="zoo:dscnn_fmnist")
    p.add_argument("--num-train", type=int, default=15000, help="training images (a fixed class-balanced subset)")
    p.add_argument("--num-val", type=int, default=None, help="validation images (default: the checkpoint's whole split)")
    p.add_argument("--epochs", default="1,3,8", help="fine-tune lengths, comma-separated")
    p.add_argument("--policies", default="largest 2 rest 4;uniform 3",
                   help="';'-separated: 'uniform B', 'largest B rest C' or comma-separated bits")
    p.add_argument("--recipes", default=",".join(RECIPES),
                   help=f"comma-separated, of {list(RECIPES)}, each optionally @RATE (a peak rate other than "
                        f"--learning-rate, e.g. cosine+distill@3e-4)")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/finetune_recipe/bench.json")
    args = p.parse_args(argv)

    import numpy as np

    import tfmpq
    from tfmpq import data, zoo
    from tfmpq._io import write_json_atomic
    from tfmpq.evaluate import Evaluator
    from tfmpq.recipe import FinetuneRecipe
    from tfmpq.stats import wilson_interval

    name = args.model.split(":")[-1]
    ds = zoo.checkpoint_dataset(name)
    info = zoo.checkpoint_info(name)
    roles = data.roles(ds, val_fraction=info["validation"]["fraction"], num_train=args.num_train,
                       num_val=args.num_val, seed=args.seed)
    model = zoo.resolve_model(args.model)
    groups = tfmpq.quantizable_groups(model)
    policies = [parse_policy(s.strip(), groups) for s in args.policies.split(";")]
    epochs = [int(e) for e in args.epochs.split(",")]
    recipes = [r.strip() for r in args.recipes.split(",")]
    print(f"{args.model}: {len(roles.train[1])} training / {len(roles.val[1])} validation / {len(roles.test[1])} test "
          f"images; policies {[(l, b) for l, b in policies]}", flush=True)
    ev = Evaluator(model, roles.train, roles.val, evaluation="qat", epochs=1, seed=args.seed,
                   learning_rate=args.learning_rate)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    done = {}
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            done = {r["key"]: r for r in json.load(f)["runs"]}
    n = len(roles.test[1])
    for (label, bits), recipe_name, e in itertools.product(policies, recipes, epochs):
        key = f"{label}|{recipe_name}|{e}"
        if key in done:
            continue
        base, _, rate = recipe_name.partition("@")  # "cosine+distill@3e-4": another peak learning rate
        schedule, distill = RECIPES[base]
        recipe = FinetuneRecipe(epochs=e, schedule=schedule, distill=distill,
                                learning_rate=float(rate) if rate else None)
        policy = tfmpq.QuantPolicy.from_bits(model, weight_bits=list(bits), activation_bits=8)
        t0 = time.perf_counter()
        cand, qat = ev.finetune(policy, recipe=recipe)
        hits = ev.correct(qat, roles.test)
        k = int(np.sum(hits))
        done[key] = {"key": key, "policy": label, "bits": list(bits), "recipe": recipe_name, "epochs": e,
                     "val_accuracy": cand.accuracy, "val_per_epoch": cand.info.get("val_accuracy"),
                     "test_accuracy": k / n, "test_ci": list(wilson_interval(k, n)),
                     "weight_bytes": cand.metrics["weight_bytes"], "seconds": time.perf_counter() - t0}
        print(f"{label:<20} {recipe_name:<17} {e:>2} epochs: val {100 * cand.accuracy:.2f}%, test {100 * k / n:.2f}% "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        write_json_atomic(args.out, {"options": vars(args), "runs": list(done.values())})
    print(table(list(done.values()), policies, recipes, epochs))
    return 0


def table(runs: list[dict], policies, recipes, epochs) -> str:
    """Markdown: one row per (policy, recipe), one column per epoch count, ``val / test``."""
    by = {r["key"]: r for r in runs}
    head = "| policy | recipe | " + " | ".join(f"{e} ep. val / test" for e in epochs) + " |"
    lines = [head, "|---|---|" + "---:|" * len(epochs)]
    for (label, _), recipe in itertools.product(policies, recipes):
        cells = []
        for e in epochs:
            r = by.get(f"{label}|{recipe}|{e}")
            cells.append("-" if r is None else f"{100 * r['val_accuracy']:.2f} / {100 * r['test_accuracy']:.2f}")
        lines.append(f"| {label} | {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
