"""Does one-shot scoring rank policies like stand-alone QAT does, and how much cheaper is it?

On one model and one set of random policies (issue 14, item 3):
  1. stand-alone QAT scores: `Evaluator(evaluation="qat", epochs=--qat-epochs)` per policy (cached in
     OUT_DIR/qat-*.json, so a second one-shot setting reuses them);
  2. one-shot scores: `Evaluator(evaluation="oneshot", epochs=--oneshot-epochs)`: the shared model is
     trained once (the one-time cost, reported apart), then each policy is re-calibrated and scored;
  3. Kendall's tau-b (scipy.stats.kendalltau) and the top-10 overlap between the two rankings, the
     per-candidate cost of each (median seconds) and their ratio, and, timed alternately in one process,
     wall and CPU seconds per candidate;
  4. with --front, the two-stage search against a QAT-only search, both compared with the uniform
     policies on held-out test (`equal_time_fronts`).

The data are the demo roles (`tfmpq.data.roles`): a class-balanced training subset of --num-train
images, the fixed validation split (or --num-val of it). Writes OUT_DIR/oneshot-<setting>.json and
prints one Markdown row for the README.

Run:
  python -m bench.oneshot --num-train 2000 --num-val 1000 --policies 40 --qat-epochs 2 --oneshot-epochs 4
  python -m bench.oneshot ... --distill      # in-place distillation (the QAT scores are reused)
  # the README's runs (shared training at lr 1e-4, 2 calibration batches: the defaults):
  python -m bench.oneshot --num-train 9000 --num-val 1000 --policies 40 --qat-epochs 2 --oneshot-epochs 4 \
      --qat-seed2 1 --timing-policies 0 [--oneshot-seed 1]                       # tau (another shared training)
  python -m bench.oneshot ... --timing-policies 10                               # the cost ratio, alone on the machine
  python -m bench.oneshot ... --front --front-qat 8,3 --front-oneshot 40,10 --front-rescore-members 8
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.oneshot", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="zoo:small_cnn_fmnist")
    p.add_argument("--data", default=None,
                   help="dataset name (tfmpq.data.load). Default: the one the zoo checkpoint was trained on")
    p.add_argument("--num-train", type=int, default=2000, help="training images (a fixed class-balanced subset)")
    p.add_argument("--num-val", type=int, default=1000, help="validation images")
    p.add_argument("--policies", type=int, default=40, help="random policies scored both ways")
    p.add_argument("--bits", default="2,3,4,5,6,7,8", help="weight bit-widths of the policies")
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--qat-learning-rate", type=float, default=1e-4)
    p.add_argument("--oneshot-epochs", type=int, default=4)
    p.add_argument("--oneshot-learning-rate", type=float, default=1e-4)
    p.add_argument("--num-random-policies", type=int, default=2, help="random policies per sandwich step")
    p.add_argument("--distill", action="store_true", help="in-place distillation from the highest-bit policy")
    p.add_argument("--calibration-batches", type=int, default=2,
                   help="training batches of re-calibration (2 x 64 images ranked as well as 4 or 8 on the demo CNN)")
    p.add_argument("--qat-seed2", type=int, default=None,
                   help="also score QAT with this evaluator seed (another data order): the QAT-vs-QAT tau, the "
                        "ceiling any cheaper score can reach against noisy QAT scores")
    p.add_argument("--timing-policies", type=int, default=5,
                   help="policies timed again with QAT and one-shot alternately in this process (the cost ratio "
                        "under the same machine load; the first QAT candidate warms up and is not counted)")
    p.add_argument("--front", action="store_true",
                   help="also the equal-wall-time comparison: an NSGA-II search scored with QAT against one scored "
                        "one-shot and re-scored with QAT, both fronts compared with uniform policies on held-out test")
    p.add_argument("--front-qat", default="8,3", help="POPULATION,GENERATIONS of the QAT-only search. Default 8,3.")
    p.add_argument("--front-oneshot", default="40,9",
                   help="POPULATION,GENERATIONS of the one-shot search. Default 40,9.")
    p.add_argument("--front-rescore-members", type=int, default=None,
                   help="re-score at most this many members of the one-shot front with QAT (spread along the size; "
                        "rescore_members). Default: all")
    p.add_argument("--front-sides", default="qat,oneshot",
                   help="which searches of --front to run: qat, oneshot or both (QAT-only is deterministic for a seed: "
                        "a second one-shot setting need not repeat it). Default: qat,oneshot")
    p.add_argument("--front-finetune-epochs", type=int, default=3,
                   help="QAT epochs of every policy in the held-out comparison. Default 3.")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oneshot-seed", type=int, default=None,
                   help="seed of the shared training alone (its data order and sampled policies; the policies scored, "
                        "the data and the QAT scores stay those of --seed): the one-shot scores' own spread. "
                        "Default: --seed")
    p.add_argument("--out-dir", default=os.path.join("runs", "bench_oneshot"))
    args = p.parse_args(argv)
    if not args.front_sides or not set(args.front_sides.split(",")) <= {"qat", "oneshot"}:
        p.error(f"--front-sides: expected qat, oneshot or qat,oneshot; got {args.front_sides!r}")

    import numpy as np
    from scipy.stats import kendalltau

    from tfmpq import QuantPolicy, data, zoo
    from tfmpq._io import write_json_atomic
    from tfmpq.search import Evaluator

    name = args.model.split(":")[-1]
    info = zoo.checkpoint_info(name) if name in zoo.checkpoints() else None
    ds = data.load(args.data or (info or {}).get("dataset", "default"))
    val_fraction = info["validation"]["fraction"] if info and info["dataset"] == ds.name else data.VALIDATION_FRACTION
    roles = data.roles(ds, val_fraction=val_fraction, num_train=args.num_train, num_val=args.num_val, seed=args.seed)
    model = zoo.resolve_model(args.model)
    bits = _bits(args)
    num_groups = len(QuantPolicy.uniform(model, 8).group_names)
    rng = np.random.default_rng(args.seed)
    genes = []
    while len(genes) < args.policies:  # distinct random policies
        g = tuple(int(b) for b in rng.choice(bits, size=num_groups))
        if g not in genes:
            genes.append(g)
    policies = [QuantPolicy.from_bits(model, weight_bits=list(g), activation_bits=8) for g in genes]
    print(f"{args.model} on {ds.name}: {len(roles.train[1])} training / {len(roles.val[1])} validation images, "
          f"{num_groups} groups, {len(policies)} random policies", flush=True)
    os.makedirs(args.out_dir, exist_ok=True)

    # 1. stand-alone QAT, cached per (model, sizes, epochs, lr, seed)
    def qat_scores(seed):
        qat_path = os.path.join(args.out_dir, f"qat-{name}-n{args.num_train}-v{args.num_val}-e{args.qat_epochs}-"
                                              f"lr{args.qat_learning_rate:g}-s{args.seed}" +
                                ("" if seed == args.seed else f"-evalseed{seed}") + ".json")
        qat = json.load(open(qat_path)) if os.path.exists(qat_path) else {}
        todo = [g for g in genes if ",".join(map(str, g)) not in qat]
        if todo:
            ev = Evaluator(model, roles.train, roles.val, evaluation="qat", epochs=args.qat_epochs,
                           learning_rate=args.qat_learning_rate, seed=seed)
            for i, g in enumerate(todo):
                c = ev.evaluate(QuantPolicy.from_bits(model, weight_bits=list(g), activation_bits=8))
                qat[",".join(map(str, g))] = {"accuracy": c.accuracy, "seconds": c.seconds}
                write_json_atomic(qat_path, qat)  # after each: an interrupted bench resumes
                print(f"qat (seed {seed}) {i + 1}/{len(todo)} {g}: {c.accuracy:.4f} ({c.seconds:.1f} s)", flush=True)
        return qat

    qat = qat_scores(args.seed)
    qat2 = qat_scores(args.qat_seed2) if args.qat_seed2 is not None else None

    # 2. one-shot
    t0 = time.perf_counter()
    ev = oneshot_evaluator(args, model, roles)  # a rerun loads the shared model from --out-dir
    oneshot = {}
    for g, policy in zip(genes, policies):
        c = ev.evaluate(policy)
        oneshot[",".join(map(str, g))] = {"accuracy": c.accuracy, "seconds": c.seconds}
    oneshot_total = time.perf_counter() - t0
    print(f"one-shot: shared training {ev.oneshot_info['seconds']:.1f} s ({ev.oneshot_info['source']}), "
          f"{len(genes)} candidates scored, "
          f"{oneshot_total:.1f} s in all", flush=True)

    # the cost ratio under the same load: QAT and one-shot candidates alternately
    # (wall seconds, and CPU seconds of this process: this VM's wall clock shows stalls of 10.24 s)
    timing = {"qat": [], "oneshot": [], "qat_cpu": [], "oneshot_cpu": []}
    if args.timing_policies:
        qev = Evaluator(model, roles.train, roles.val, evaluation="qat", epochs=args.qat_epochs,
                        learning_rate=args.qat_learning_rate, seed=args.seed)
        qev.evaluate(policies[-1])  # build and trace
        for policy in policies[:args.timing_policies]:
            for kind, e in (("qat", qev), ("oneshot", ev)):
                c0 = time.process_time()
                timing[kind].append(e.evaluate(policy).seconds)
                timing[kind + "_cpu"].append(time.process_time() - c0)

    # 3. agreement and cost
    keys = [",".join(map(str, g)) for g in genes]
    a_qat = np.array([qat[k]["accuracy"] for k in keys])
    a_os = np.array([oneshot[k]["accuracy"] for k in keys])
    tau, p_value = kendalltau(a_qat, a_os)
    top = args.top
    # ties broken by the key (deterministic)
    top_qat = set(sorted(keys, key=lambda k: (-qat[k]["accuracy"], k))[:top])
    top_os = set(sorted(keys, key=lambda k: (-oneshot[k]["accuracy"], k))[:top])
    qat_sec = statistics.median(qat[k]["seconds"] for k in keys)
    os_sec = statistics.median(oneshot[k]["seconds"] for k in keys)
    out = {
        "model": args.model, "data": ds.name, "roles": roles.description, "options": vars(args),
        "policies": keys, "qat": {k: qat[k] for k in keys}, "oneshot": oneshot,
        "kendall_tau": float(tau), "kendall_p": float(p_value), f"top{top}_overlap": len(top_qat & top_os),
        "qat_seconds_per_candidate": qat_sec, "oneshot_seconds_per_candidate": os_sec,
        "cost_ratio": qat_sec / os_sec, "shared_training_seconds": ev.oneshot_info["seconds"],
        "shared_training": {k: v for k, v in ev.oneshot_info.items() if k != "path"},
        "break_even_candidates": ev.oneshot_info["seconds"] / max(qat_sec - os_sec, 1e-9),
        "pearson_r": float(np.corrcoef(a_qat, a_os)[0, 1]),
    }
    if timing["qat"]:
        q, o = statistics.median(timing["qat"]), statistics.median(timing["oneshot"])
        qc, oc = statistics.median(timing["qat_cpu"]), statistics.median(timing["oneshot_cpu"])
        out["interleaved"] = {"qat_seconds": timing["qat"], "oneshot_seconds": timing["oneshot"],
                              "qat_cpu_seconds": timing["qat_cpu"], "oneshot_cpu_seconds": timing["oneshot_cpu"],
                              "qat_median": q, "oneshot_median": o, "cost_ratio": q / o,
                              "qat_cpu_median": qc, "oneshot_cpu_median": oc, "cpu_cost_ratio": qc / oc}
        print(f"interleaved timing ({len(timing['qat'])} policies): QAT {q:.2f} s, one-shot {o:.3f} s per candidate, "
              f"ratio {q / o:.1f}x; CPU seconds {qc:.2f} / {oc:.3f}, ratio {qc / oc:.1f}x")
    if qat2 is not None:
        tau2, p2 = kendalltau(a_qat, np.array([qat2[k]["accuracy"] for k in keys]))
        top_qat2 = set(sorted(keys, key=lambda k: (-qat2[k]["accuracy"], k))[:top])
        out["qat_vs_qat"] = {"seed2": args.qat_seed2, "kendall_tau": float(tau2), "kendall_p": float(p2),
                             f"top{top}_overlap": len(top_qat & top_qat2)}
        print(f"QAT seed {args.seed} vs QAT seed {args.qat_seed2}: tau {tau2:.3f} (p={p2:.2g}), "
              f"top-{top} overlap {len(top_qat & top_qat2)}/{top}")
    if args.front:
        out["front"] = equal_time_fronts(args, model, roles)
    setting = (f"e{args.oneshot_epochs}-lr{args.oneshot_learning_rate:g}-r{args.num_random_policies}"
               f"-c{args.calibration_batches}") + (
        "-distill" if args.distill else "") + ("" if args.oneshot_seed is None else f"-os{args.oneshot_seed}")
    path = os.path.join(args.out_dir, f"oneshot-{name}-n{args.num_train}-v{args.num_val}-{setting}-s{args.seed}.json")
    write_json_atomic(path, out, default=str)
    print(f"\nwrote {path}")
    print(markdown_row(out))
    return 0


def _bits(args) -> tuple[int, ...]:
    return tuple(int(b) for b in args.bits.split(","))


def oneshot_evaluator(args, model, roles):
    """The one-shot Evaluator of the bench's options (shared training at --oneshot-learning-rate, QAT
    re-scores at --qat-learning-rate), its shared model saved in and loaded from --out-dir."""
    from tfmpq.search import Evaluator

    return Evaluator(model, roles.train, roles.val, evaluation="oneshot", epochs=args.oneshot_epochs,
                     learning_rate=args.qat_learning_rate, oneshot_learning_rate=args.oneshot_learning_rate,
                     seed=args.seed if args.oneshot_seed is None else args.oneshot_seed, distill=args.distill,
                     num_random_policies=args.num_random_policies,
                     oneshot_bits=_bits(args), calibration_batches=args.calibration_batches, cache_dir=args.out_dir)


def equal_time_fronts(args, model, roles) -> dict:
    """Item 3c: the front after (about) equal wall time, QAT-only vs one-shot + QAT re-scoring, on held-out test.

    Both are NSGA-II searches (accuracy vs weight bytes) on the same training / validation data and seed.
    The QAT-only search scores each candidate with ``--qat-epochs`` of stand-alone QAT; the one-shot search
    loads (or trains: counted) the shared model, scores its candidates one-shot and re-scores its front with
    the same stand-alone QAT (``rescore="qat"``). Each is then compared with the uniform policies by
    ``Result.compare_with_uniform`` (every policy fine-tuned ``--front-finetune-epochs`` alike, chosen on
    validation, reported on ``roles.test``). The wall times are measured, not assumed: the one-shot side's
    includes its shared training (or the load of the file the first part of this bench trained, and the
    training's recorded seconds are added) and its re-scoring.
    """
    import shutil

    from tfmpq.search import nsga2
    from tfmpq.search.compare import comparison_to_json

    def pair(text):
        a, b = (int(v) for v in text.split(","))
        return a, b

    out = {}
    sides = [s for s in (("qat", pair(args.front_qat)), ("oneshot", pair(args.front_oneshot)))
             if s[0] in args.front_sides.split(",")]
    for side, (pop, gens) in sides:
        run_dir = os.path.join(args.out_dir, f"front-{side}")
        shutil.rmtree(run_dir, ignore_errors=True)
        kwargs = dict(evaluation="qat", epochs=args.qat_epochs, learning_rate=args.qat_learning_rate)
        if side == "oneshot":
            kwargs = dict(evaluator=oneshot_evaluator(args, model, roles), evaluation="oneshot", rescore="qat",
                          rescore_epochs=args.qat_epochs, rescore_members=args.front_rescore_members)
        t0, c0 = time.perf_counter(), time.process_time()
        result = nsga2(model, roles.train, roles.val, population=pop, offspring=pop, generations=gens,
                       seed=args.seed, run_dir=run_dir, verbose=1,
                       bits=_bits(args), **kwargs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        shared = 0.0
        if side == "oneshot":
            info = result.evaluator.oneshot_info
            shared = info["seconds"] if info["source"] != "trained" else 0.0  # loaded: add its training time
        cmp = result.compare_with_uniform(roles.test, finetune_epochs=args.front_finetune_epochs, verbose=1)
        out[side] = {"population": pop, "generations": gens, "candidates": len(result.candidates),
                     "rescored": len(result.rescored),
                     "search_wall_seconds": wall + shared, "search_cpu_seconds": cpu,
                     "loaded_shared_training_seconds": shared,
                     "front": [{"genes": list(c.genes), "accuracy": c.accuracy, "weight_bytes": c.weight_bytes}
                               for c in (result.rescored_front if side == "oneshot" else result.front)],
                     "comparison": comparison_to_json(cmp)}
        print(f"front ({side}): {len(result.candidates)} candidates, {wall + shared:.0f} s wall, {cpu:.0f} s CPU"
              + (f" (+ the loaded shared training's {shared:.0f} s)" if shared else ""), flush=True)
    return out


def markdown_row(out: dict) -> str:
    """| setting | policies | tau (p) | top-10 overlap | QAT s/cand. | one-shot s/cand. | ratio | shared training s |"""
    o = out["options"]
    setting = (f"one-shot {o['oneshot_epochs']} ep, lr {o['oneshot_learning_rate']:g}, "
               f"sandwich 2+{o['num_random_policies']}{', distill' if o['distill'] else ''}, "
               f"{o['calibration_batches']} calibration batches")
    top = o["top"]
    return (f"| {setting} | {len(out['policies'])} | {out['kendall_tau']:.3f} (p={out['kendall_p']:.2g}) | "
            f"{out[f'top{top}_overlap']}/{top} | {out['qat_seconds_per_candidate']:.2f} | "
            f"{out['oneshot_seconds_per_candidate']:.3f} | {out['cost_ratio']:.0f}x | "
            f"{out['shared_training_seconds']:.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
