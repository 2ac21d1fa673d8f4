"""The most accurate model under a memory budget, held out: the budget curve of a searched model against the uniform
staircase and hand-made policies (issue 24, item 6).

One run per model:
  1. the data in three roles (``tfmpq.data.roles``): ``--num-train`` training images, the fixed validation split
     the float checkpoint was never trained on (``--num-val`` of it), the 10,000 test images (reporting only);
  2. the budgets: ``--num-budgets`` midpoints of equal bins between the costs of uniform 2- and 5-bit, on each
     ``--costs`` metric;
  3. one NSGA-II search on validation (``--evaluation oneshot``: one shared variable-bit model trained once,
     candidates scored on it), its initial population seeded at each budget with the ILP's allocation and the
     hand-made policies (``seed_budgets``);
  4. ``Result.compare_at_budgets`` on each cost: per budget the finalists of the searched pick (the
     ``--candidates-per-budget`` best-scoring front members that fit and the ILP's allocation at the budget; with
     ``--ilp-as baseline`` the front members only), the largest uniform policy that fits and every hand-made policy
     that fits (``largest-1``, ``largest-2``, ``first-last-8``, ``small-8``; the ILP's allocation too with
     ``--ilp-as baseline``), all fine-tuned with one recipe (``--finetune-epochs``, cosine, distilled from the
     float model, peak ``--finetune-lr``); the pick chosen on validation among its finalists; test accuracy with
     95 % Wilson intervals, McNemar's exact test against the uniform policy and the best hand-made one (by
     validation).

Writes RUN_DIR (the search and ``budgets.json``, both resumable), RUN_DIR/bench.json, ``budget_curve-COST.png``,
and prints the table and the targets of the issue.

Run (the README's rows, 2-core CPU scale):
  python -m bench.budget_curve --model zoo:dscnn_fmnist
  python -m bench.budget_curve --model zoo:mobilenet_v1_fmnist --num-train 10000 --costs weight_bytes \
      --candidates-per-budget 1 --compare-at 0,2,4,6
  python -m bench.budget_curve --model zoo:dscnn_fmnist --granularity channel --channel-clusters 4 \
      --population 48 --generations 20 --costs weight_bytes --candidates-per-budget 1 --no-handmade \
      --paired-with runs/budget_curve/dscnn_fmnist --run-dir runs/budget_curve/dscnn_channel
  python -m bench.budget_curve --model zoo:mobilenet_v1_fmnist --num-train 10000 --costs weight_bytes \
      --candidates-per-budget 1 --compare-at 0,2,4,6 --granularity channel --channel-clusters 4 --population 48 \
      --generations 20 --no-handmade --paired-with runs/budget_curve/mobilenet_v1_fmnist \
      --run-dir runs/budget_curve/mobilenet_channel
  python -m bench.budget_curve --model zoo:small_cnn_fmnist --num-train 9000 --num-val 1000
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.budget_curve", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="zoo:dscnn_fmnist")
    p.add_argument("--costs", default="weight_bytes,flash_bytes", help="comma-separated cost metrics")
    p.add_argument("--num-train", type=int, default=15000, help="training images (a fixed class-balanced subset)")
    p.add_argument("--num-val", type=int, default=3000, help="validation images, of the checkpoint's fixed split")
    p.add_argument("--num-budgets", type=int, default=8)
    p.add_argument("--evaluation", default="oneshot", choices=("oneshot", "qat", "ptq"))
    p.add_argument("--epochs", type=int, default=4, help="one-shot: shared training epochs; qat: per candidate")
    p.add_argument("--population", type=int, default=32)
    p.add_argument("--generations", type=int, default=15)
    p.add_argument("--no-seeds", action="store_true", help="no ILP / hand-made seeds (the search alone)")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--finetune-lr", type=float, default=1e-3)
    p.add_argument("--no-distill", action="store_true")
    p.add_argument("--candidates-per-budget", type=int, default=2)
    p.add_argument("--granularity", choices=("layer", "channel"), default="layer",
                   help="channel: each group's channels in --channel-clusters clusters, one gene each (issue 25)")
    p.add_argument("--channel-clusters", type=int, default=4)
    p.add_argument("--prune-channels", action="store_true",
                   help="with --granularity channel: each group's clusters but its last may also be pruned (0 bits)")
    p.add_argument("--paired-with", default=None, metavar="RUN_DIR",
                   help="another run of this bench on the same data (e.g. the layer-wise one): its picks against this "
                        "run's at the same budgets, McNemar's test on the paired test predictions")
    p.add_argument("--compare-at", default=None, metavar="I,I,...",
                   help="compare at these of the --num-budgets budgets only (0-based; the search, seeded at all of "
                        "them, is unchanged): fewer fine-tunes on a large model")
    p.add_argument("--no-handmade", action="store_true",
                   help="no hand-made baselines in the comparison (fewer fine-tunes; the search is the same)")
    p.add_argument("--ilp-as", choices=("candidate", "baseline"), default="candidate",
                   help="the ILP's allocation at each budget: one more finalist of the searched pick (chosen on "
                        "validation with the front's), or a hand-made baseline the pick is held against")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None, help="default: runs/budget_curve/<model>")
    args = p.parse_args(argv)

    import tfmpq
    from tfmpq import data, report, search, zoo
    from tfmpq._io import write_json_atomic
    from tfmpq.recipe import FinetuneRecipe
    from tfmpq.search import sensitivity
    from tfmpq.search.budgets import auto_budgets, auto_range, budgets_to_json
    from tfmpq.search.handmade import handmade_baselines

    start = time.perf_counter()
    name = args.model.split(":")[-1]
    run_dir = args.run_dir or os.path.join("runs", "budget_curve", name)
    info = zoo.checkpoint_info(name)
    ds = zoo.checkpoint_dataset(name)
    roles = data.roles(ds, val_fraction=info["validation"]["fraction"], num_train=args.num_train,
                       num_val=args.num_val, seed=args.seed)
    model = zoo.resolve_model(args.model)
    costs = [c.strip() for c in args.costs.split(",")]
    print(f"{args.model}: {len(roles.train[1])} training / {len(roles.val[1])} validation / {len(roles.test[1])} test "
          f"images; costs {costs}", flush=True)
    space = search.make_space(model)
    params = {g.name: g.kernel_params for g in tfmpq.quantizable_groups(model)}

    def cost_fn(cost):
        return lambda genes: float(tfmpq.metrics.summary(model, space.decode(tuple(genes)))[cost])

    budgets = {c: auto_budgets(*auto_range(space, cost_fn(c)), args.num_budgets) for c in costs}
    for c in costs:
        print(f"budgets on {c}: {[round(b) for b in budgets[c]]}", flush=True)

    # 3. the search: seeded at the budgets of the first cost (the others get theirs through the ILP of the first)
    t0 = time.perf_counter()
    resume = os.path.exists(os.path.join(run_dir, "run.json"))
    result = search.nsga2(
        model, roles.train, roles.val, evaluation=args.evaluation, epochs=args.epochs, population=args.population,
        offspring=args.population, generations=args.generations, objectives=("accuracy", costs[0]),
        seed_budgets=None if args.no_seeds else budgets[costs[0]], run_dir=run_dir, resume=resume, seed=args.seed,
        **({} if args.granularity == "layer" else {"granularity": "channel", "channel_clusters": args.channel_clusters}),
        **({"prune_channels": True} if args.prune_channels else {}))  # with "layer": the space's ValueError
    search_seconds = time.perf_counter() - t0

    # 4. the comparison on each cost, hand-made baselines (and the ILP's allocation) at each budget
    recipe = FinetuneRecipe(epochs=args.finetune_epochs, learning_rate=args.finetune_lr, distill=not args.no_distill)
    out = {"model": args.model, "data": ds.name, "roles": roles.description, "options": vars(args),
           "num_candidates": len(result.candidates), "front_size": len(result.front),
           "search_seconds": search_seconds, "comparisons": {}}
    keep = None if args.compare_at is None else {int(i) for i in args.compare_at.split(",")}
    compared = {c: [b for i, b in enumerate(budgets[c]) if keep is None or i in keep] for c in costs}
    for cost in costs:
        cost_of = cost_fn(cost)
        baselines = {} if args.no_handmade else handmade_baselines(space, [params[n] for n in space.group_names],
                                                                   cost_of)
        baselines = {n: _in_space(f, space, result.space) for n, f in baselines.items()}  # layer-wise -> channel genes
        ilp = {b: g for b, g in zip(compared[cost], _ilp_at(sensitivity, model, result, roles.train, cost,
                                                            compared[cost], args.seed))}
        candidates = {"ilp": lambda b, ilp=ilp: ilp.get(b)}
        if args.ilp_as == "baseline":
            baselines.update(candidates)
            candidates = {}
        t1 = time.perf_counter()
        cmp = result.compare_at_budgets(test=roles.test, budgets=compared[cost], cost=cost, recipe=recipe,
                                        candidates_per_budget=args.candidates_per_budget, baselines=baselines, candidates=candidates)
        cmp_json = budgets_to_json(cmp)
        cmp_json["targets"] = targets(cmp_json, result, cost, cost_of, compared[cost], space)
        cmp_json["compare_seconds"] = time.perf_counter() - t1
        out["comparisons"][cost] = cmp_json
        print(markdown(cmp_json), flush=True)
        print(json.dumps(cmp_json["targets"], indent=1), flush=True)
        others = {}
        if args.paired_with:
            cmp_json["paired"] = paired_with(args.paired_with, run_dir, cost)
            print(paired_markdown(cmp_json["paired"], cost), flush=True)
            others = {f"{_granularity(args.paired_with)} pick (--paired-with)": _comparison(args.paired_with, cost)}
        report.plot_budget_curve(cmp_json, os.path.join(run_dir, f"budget_curve-{cost}.png"),
                                 label=f"{args.granularity}-wise" + (" + pruning" if args.prune_channels else "") + " pick",
                                 others=others)
    out["total_seconds"] = time.perf_counter() - start
    write_json_atomic(os.path.join(run_dir, "bench.json"), out)
    print(f"\nwrote {os.path.join(run_dir, 'bench.json')} ({out['total_seconds']:.0f} s: search {search_seconds:.0f} s)")
    return 0


def _in_space(make, layer_space, space):
    """A hand-made family (layer-wise chromosomes) as chromosomes of ``space`` (itself when layer-wise)."""
    if space is layer_space or not space.clusters:
        return make

    def encoded(budget):
        genes = make(budget)
        return None if genes is None else space.encode(layer_space.decode(genes))
    return encoded


def _comparison(run_dir: str, cost: str) -> dict:
    """The comparison on ``cost`` stored in a run's ``budgets.json`` (what ``compare_at_budgets`` returned)."""
    from tfmpq.search import store

    return (store.read_output(run_dir, store.BUDGETS) or {}).get("results", {}).get(cost, {"rows": []})


def _granularity(run_dir: str) -> str:
    """``layer-wise`` / ``channel-wise`` (``+ pruning``): how the bench run in ``run_dir`` searched."""
    try:
        with open(os.path.join(run_dir, "bench.json")) as f:
            options = json.load(f)["options"]
    except (OSError, KeyError, ValueError):  # a run killed before its bench.json: its budgets.json is enough
        return "other run's"
    return f"{options.get('granularity', 'layer')}-wise" + (" + pruning" if options.get("prune_channels") else "")


def paired_with(other_dir: str, run_dir: str, cost: str) -> list[dict]:
    """Per budget, the other run's pick against this run's on the same test images (both runs' ``budgets.json``:
    the picks and their packed test hits), McNemar's exact test of the paired predictions."""
    from tfmpq.search import store
    from tfmpq.search.budgets import unpack_hits
    from tfmpq.stats import mcnemar

    def load(d):
        stored = store.read_output(d, store.BUDGETS) or {}
        hits = {tuple(r["genes"]): unpack_hits(r) for r in stored.get("finetuned", [])}
        return stored, {round(r["budget"]): r for r in stored.get("results", {}).get(cost, {}).get("rows", [])}, hits

    mine, my_rows, my_hits = load(run_dir)
    theirs, their_rows, their_hits = load(other_dir)
    if mine.get("key", {}).get("test_sha1") != theirs.get("key", {}).get("test_sha1"):
        raise SystemExit(f"--paired-with: {other_dir} was scored on other test images")
    out = []
    for budget, row in sorted(my_rows.items()):
        other = their_rows.get(budget)
        if other is None or row["front"] is None or other["front"] is None:
            continue
        a, b = row["front"], other["front"]
        test = mcnemar(my_hits[tuple(a["genes"])], their_hits[tuple(b["genes"])])
        out.append({"budget": row["budget"], "this": a, "other": b, "gain": a["test_accuracy"] - b["test_accuracy"],
                    "p_value": test["p_value"], "uniform": row["uniform"]})
    return out


def paired_markdown(rows: list[dict], cost: str) -> str:
    """| budget | this run's pick | test | the other run's pick | test | difference | p | largest uniform | test |"""
    lines = [f"| {cost} budget | this run's pick | test | the other run's pick | test | difference | McNemar p | "
             f"largest uniform | test |", "|---:|---|---:|---|---:|---:|---:|---|---:|"]
    for r in rows:
        a, b, u = r["this"], r["other"], r["uniform"]
        lines.append(f"| {r['budget']:,.0f} | {a['cost']:,.0f} B | {100 * a['test_accuracy']:.2f}% | {b['cost']:,.0f} B | "
                     f"{100 * b['test_accuracy']:.2f}% | {100 * r['gain']:+.2f} pp | {r['p_value']:.2g} | "
                     f"{'none' if u is None else u.get('label') or u['cost']} | "
                     f"{'-' if u is None else format(100 * u['test_accuracy'], '.2f') + '%'} |")
    if rows:
        lines.append(f"\nmean difference: {100 * sum(r['gain'] for r in rows) / len(rows):+.2f} pp")
    return "\n".join(lines)


def _ilp_at(sensitivity, model, result, train, cost: str, budgets, seed: int) -> list:
    """The ILP's allocation at each budget (None where none fits), in budget order; the Hessian traces once."""
    from tfmpq.search.problem import Problem

    problem = Problem(space=result.space, evaluator=result.evaluator, objectives=result.objectives, constraint=None,
                      model=model, train=train)
    traces = sensitivity.traces_for(model, train, sensitivity=None, sensitivity_data=None, num_probes=64,
                                    num_samples=512, seed=seed)
    out = []
    for b in budgets:
        found = sensitivity.budget_seeds(problem, budgets=[b], metric=cost, kinds=("ilp",), sensitivity=traces)
        out.append(found[0] if found else None)
    return out


def targets(cmp: dict, result, cost: str, cost_of, budgets, space) -> dict:
    """The issue's targets on this comparison (held out): the mean gain over the uniform staircase, above uniform
    3-bit's cost, budgets with a significant gain or loss, a dense front, the pick against the best hand-made one."""
    u3 = cost_of(space.uniform_chromosomes_by_bits()[space.bits.index(3)]) if 3 in space.bits else None
    rows = cmp["rows"]
    gains = [r["gain"] for r in rows if r["gain"] is not None]
    above = [r["gain"] for r in rows if r["gain"] is not None and u3 is not None and r["budget"] > u3]
    evaluated = sorted(float(result.evaluator.metrics(result.space.decode(c.genes))[cost])  # the search's own space
                       for c in result.candidates if c.ok)
    dense = [any(0.95 * b <= c <= b for c in evaluated) for b in budgets]
    vs = [(r["gain_vs_baseline"], r["p_vs_baseline"]) for r in rows if r.get("gain_vs_baseline") is not None]
    return {
        "mean_gain_pp": None if not gains else 100 * sum(gains) / len(gains),
        "mean_gain_above_u3_pp": None if not above else 100 * sum(above) / len(above),
        "budgets_gain_p_below_0.01": sum(1 for r in rows if r["gain"] and r["gain"] > 0 and r["p_value"] < 0.01),
        "budgets_worse_p_below_0.05": sum(1 for r in rows if r["gain"] and r["gain"] < 0 and r["p_value"] < 0.05),
        "dense_front_within_5pct": f"{sum(dense)}/{len(dense)}",
        "pick_below_best_handmade_p_below_0.05": sum(1 for g, p in vs if g < 0 and p < 0.05),
        "pick_minus_best_handmade_pp": [None if g is None else round(100 * g, 2) for g, _ in vs],
    }


def markdown(cmp: dict) -> str:
    """| budget | pick | test | uniform | test | gain | p | best hand-made | test | pick - it | p |"""
    cost = cmp["cost"]

    def side(r):
        if r is None:
            return "none fits", "-"
        lo, hi = r["ci"]
        label = f"uniform {r['label']}" if r.get("label") else ",".join(map(str, r["genes"]))
        return f"{label} ({r['cost']:,.0f} B)", f"{100 * r['test_accuracy']:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    lines = [f"| {cost} budget | searched pick | test | largest uniform | test | gain | McNemar p | best hand-made "
             f"(by val) | test | pick - it | p |", "|---:|---|---:|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in cmp["rows"]:
        fp, ft = side(r["front"])
        if r["front"] is not None and r.get("pick_source", "front") != "front":
            fp += f" [{r['pick_source']}]"
        up, ut = side(r["uniform"])
        b = r["baselines"].get(r["best_baseline"]) if r.get("best_baseline") else None
        bp, bt = side(b)
        gain = "n/a" if r["gain"] is None else f"{100 * r['gain']:+.2f} pp"
        p = "n/a" if r["p_value"] is None else f"{r['p_value']:.2g}"
        vs = "n/a" if r.get("gain_vs_baseline") is None else f"{100 * r['gain_vs_baseline']:+.2f} pp"
        pv = "n/a" if r.get("p_vs_baseline") is None else f"{r['p_vs_baseline']:.2g}"
        lines.append(f"| {r['budget']:,.0f} | {fp} | {ft} | {up} | {ut} | {gain} | {p} | "
                     f"{(r['best_baseline'] + ': ' + bp) if b else 'none fits'} | {bt} | {vs} | {pv} |")
    mean = cmp.get("mean_gain")
    lines.append(f"\nmean gain over the uniform staircase: {'n/a' if mean is None else f'{100 * mean:+.2f} pp'}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
