"""Which per-channel sensitivity ranks a layer's channels better: the weight statistic or the Hessian.

A channel-wise search (``granularity="channel"``) orders each group's output channels by a sensitivity and
cuts them into clusters, so the ranking decides which channels can share a narrow width. For each
model and each quantizable group, and each ranking:

- ``weight``: the channel's quantization error at 2 bits, ``||Q_2(w_c) - w_c||^2`` (folded kernel);
- ``hessian``: that error times the channel's Hessian trace over its weights, HAWQ-V3's Omega per
  channel (``tfmpq.hessian.channel_sensitivity(..., "hessian")``; 64 Hutchinson probes, 512 training images);
- ``trace``: the channel's Hessian trace alone (reported, not offered);
- ``random``: a seeded random order (5 seeds: the spread a ranking that knows nothing gets);

the group's most sensitive half (then quarter: one cluster of ``channel_clusters=4``) of the channels at
2 bits and the rest of the model at 8 (``top``), then the least sensitive half (quarter) at 2 bits
(``bottom``), each scored with post-training quantization (no training) on the 2,000 test images. A
ranking that knows which channels matter has a large ``top - bottom`` gap in accuracy drop; a random one
a gap near 0 on average.

Run: python -m bench.channel_ranking [--models small_cnn_fmnist,dscnn_fmnist] [--out runs/channel_ranking]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

NUM_RANDOM = 5
RANKINGS = ("weight", "hessian", "trace") + tuple(f"random{r}" for r in range(NUM_RANDOM))
#: The share of a group's channels put at 2 bits: a half, and a quarter (a cluster of channel_clusters=4).
FRACTIONS = (2, 4)


def rankings(model, train, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """``{ranking: {group: channel indices, least sensitive first}}``."""
    import tfmpq
    from tfmpq.hessian import channel_sensitivity, hessian_trace

    traces = hessian_trace(model, train, num_probes=64, num_samples=512, seed=seed).channel_trace
    scores = {"weight": channel_sensitivity(model, "weight", bits=2),
              "hessian": channel_sensitivity(model, "hessian", bits=2, channel_traces=traces),
              "trace": traces}
    out = {k: {g: np.argsort(v, kind="stable") for g, v in s.items()} for k, s in scores.items()}
    for r in range(NUM_RANDOM):
        rng = np.random.default_rng(r)
        out[f"random{r}"] = {g.name: rng.permutation(g.out_channels) for g in tfmpq.quantizable_groups(model)}
    return out


def half_policy(model, group: str, channels, bits: int = 2):
    """Every group at 8 bits, ``channels`` of ``group`` at ``bits``."""
    import tfmpq

    weight_bits = []
    for g in tfmpq.quantizable_groups(model):
        widths = [8] * g.out_channels
        if g.name == group:
            for c in channels:
                widths[int(c)] = bits
        weight_bits.append(widths)
    return tfmpq.QuantPolicy.from_bits(model, weight_bits=weight_bits, activation_bits=8)


def measure(name: str, model, roles) -> list[dict]:
    import tfmpq
    from tfmpq.search import Evaluator

    ev = Evaluator(model, roles.train, roles.test, evaluation="ptq", seed=0)
    base = ev.evaluate(tfmpq.QuantPolicy.uniform(model, 8, 8)).accuracy
    ranks = rankings(model, roles.train)
    rows = []
    for g in tfmpq.quantizable_groups(model):
        for fraction in FRACTIONS:
            part = max(1, g.out_channels // fraction)
            for ranking in RANKINGS:
                order = ranks[ranking][g.name]
                top = ev.evaluate(half_policy(model, g.name, order[-part:])).accuracy
                bottom = ev.evaluate(half_policy(model, g.name, order[:part])).accuracy
                rows.append({"model": name, "group": g.name, "channels": g.out_channels, "fraction": fraction,
                             "ranking": ranking, "uniform8": base, "drop_top": base - top,
                             "drop_bottom": base - bottom, "gap": bottom - top})
                print(f"{name} {g.name} ({g.out_channels} ch) 1/{fraction} {ranking:8s} drop top "
                      f"{100 * (base - top):6.2f} pp, bottom {100 * (base - bottom):6.2f} pp, gap "
                      f"{100 * (bottom - top):6.2f} pp", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="small_cnn_fmnist,dscnn_fmnist", help="zoo checkpoints, comma-separated")
    p.add_argument("--out", default="runs/channel_ranking")
    args = p.parse_args(argv)
    from tfmpq import data, zoo

    roles = data.roles(data.load("default"))
    os.makedirs(args.out, exist_ok=True)
    start, rows = time.time(), []
    for name in args.models.split(","):
        rows += measure(name, zoo.resolve_model(f"zoo:{name}"), roles)
    for fraction in FRACTIONS:
        for ranking in ("weight", "hessian", "trace", "random"):
            gaps = np.array([r["gap"] for r in rows if r["ranking"].startswith(ranking) and r["fraction"] == fraction])
            print(f"1/{fraction} {ranking:8s} gap mean {100 * gaps.mean():6.2f} pp, median {100 * np.median(gaps):6.2f} "
                  f"pp, > 0 in {int((gaps > 0).sum())} of {gaps.size}", flush=True)
    with open(os.path.join(args.out, "channel_ranking.json"), "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "seconds": time.time() - start}, f, indent=1)
    print(f"{time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
