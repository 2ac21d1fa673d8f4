"""Channel-wise bits deployed: a per-channel policy fine-tuned with QAT, exported, and run on both runtimes.

For each model (the demo CNN ``zoo:small_cnn_fmnist`` and the DS-CNN ``zoo:dscnn_fmnist``) and each policy:

- ``channel``: every group but the first one per channel: its channels ordered by their quantization
  error at 3 bits (``tfmpq.hessian.channel_quantization_error``, the folded kernel's; a weight
  statistic, not a tuned choice), the quarter with the largest error at 8 bits, the middle half at 4,
  the quarter with the smallest at 2; the first group at 8 bits;
- ``channel+prune``: the same, then in every group but the first and the last the eighth of the
  channels with the smallest folded-kernel L2 norm pruned (0 bits);
- ``uniform 4``: the layer-wise reference (every group at 4 bits).

each fine-tuned alike (QAT, Adam 1e-4, batch 64) from the float checkpoint, then exported with
``packed="int4"`` (LiteRT and TFLite Micro) and ``packed="auto"`` (INT4 / LUT / int8 per sub-tensor).
Measured: accuracy of the QAT model (Keras), of the file on LiteRT and on TFLite Micro (2,000 test
images), whether the two runtimes' outputs are bit-identical, the file's weight bytes
(``ExportReport.flash_bytes``, read from the flatbuffer) against ``metrics.summary``'s prediction, the
TFLite Micro arena, and the most distinct values of any channel of each width in the file.

Data: tfmpq's Fashion-MNIST subset (``tfmpq.data.roles(load("default"))``: 9,000 training, 1,000
validation, 2,000 test images; the DS-CNN checkpoint was trained on the full Fashion-MNIST training split).

Run: python -m bench.channel_export [--models small_cnn_fmnist,dscnn_fmnist] [--qat-epochs 2]
     [--out runs/channel_export]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from bench.deploy_sizes import _pct

PACKINGS = ("int4", "auto")


def channel_policy(model, prune: bool = False):
    """The ``channel`` (or ``channel+prune``) policy of the module docstring."""
    import tfmpq
    from tfmpq.hessian import channel_quantization_error, folded_kernels

    groups = tfmpq.quantizable_groups(model)
    errors = channel_quantization_error(model, bits=(3,))
    kernels = folded_kernels(model, groups)
    bits = [8]
    for i, g in enumerate(groups[1:], start=1):
        order = np.argsort(-errors[g.name][3], kind="stable")  # largest error first
        widths = np.empty(g.out_channels, int)
        quarter = g.out_channels // 4
        widths[order[:quarter]], widths[order[quarter:g.out_channels - quarter]] = 8, 4
        widths[order[g.out_channels - quarter:]] = 2
        if prune and i < len(groups) - 1:
            k = kernels[g.name]
            flat = k.reshape(-1, k.shape[-2] * k.shape[-1]) if g.kind == "DepthwiseConv2D" else k.reshape(-1, k.shape[-1])
            weakest = np.argsort(np.sum(flat.astype(np.float64) ** 2, axis=0), kind="stable")[:g.out_channels // 8]
            widths[weakest] = 0
        bits.append([int(b) for b in widths])
    return tfmpq.QuantPolicy.from_bits(model, weight_bits=bits, activation_bits=8, allow_pruning=prune)


def _levels_by_width(report, path) -> dict:
    """width -> the most distinct stored values of any channel of that width, read from the flatbuffer."""
    from tfmpq.export.flatbuffer import output_channel_axis, weight_tensors

    stored = {w.name: w for w in weight_tensors(path) if w.values is not None}
    out = {}
    for g in report.groups:
        for s in g.get("segments") or [g]:
            w = stored.get(s["tensor"])
            counts = [int(np.unique(c).size) for c in np.moveaxis(w.values, output_channel_axis(w), 0)] if w else \
                [s["max_levels_per_channel"]]  # a LUT tensor: counted in the int8 file by export_tflite
            width = s["weight_bits"]
            out[width] = max(out.get(width, 0), max(counts))
    return dict(sorted(out.items()))


def measure(name: str, label: str, model, policy, roles, args) -> list[dict]:
    import tfmpq
    from tfmpq._keras import keras
    from tfmpq.accuracy import model_accuracy
    from tfmpq.export import export_tflite, run_tflite

    t0 = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    qat = tfmpq.quantize_model(model, policy)
    qat.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", ["accuracy"])
    qat.fit(*roles.train, epochs=args.qat_epochs, batch_size=64, verbose=0)
    x, y = roles.test
    keras_acc = model_accuracy(qat, x, y)
    rows = []
    for packing in PACKINGS:
        summary = tfmpq.metrics.summary(model, policy, packing=packing)
        path = os.path.join(args.out, f"{name}_{label.replace(' ', '_').replace('+', '_')}_{packing}.tflite")
        report = export_tflite(qat, path, representative_data=roles.train[0][:256], packed=packing)
        tflm = run_tflite(path, x, "tflm")
        litert = run_tflite(path, x, "litert") if "litert" in report.runtimes else None
        row = {
            "model": name, "policy": label, "packing": packing, "weight_bits": [list(b) if isinstance(b, tuple) else b
                                                                              for b in policy.weight_bits],
            "avg_weight_bits": summary["avg_weight_bits"], "weight_bytes": summary["weight_bytes"],
            "flash_bytes_predicted": summary["flash_bytes"], "flash_bytes": report.flash_bytes,
            "file_bytes": report.file_bytes, "arena_bytes": report.arena_bytes, "scratch_bytes": report.scratch_bytes,
            "storage": report.storage, "keras_accuracy": keras_acc,
            "litert_accuracy": None if litert is None else float(np.mean(litert.argmax(-1) == y)),
            "tflm_accuracy": float(np.mean(tflm.argmax(-1) == y)),
            "litert_equals_tflm": None if litert is None else bool(np.array_equal(litert, tflm)),
            "levels_by_width": _levels_by_width(report, path),
            "operators": {op: report.operators.count(op) for op in sorted(set(report.operators))},
        }
        rows.append(row)
        print(f"  {label:>13} {packing:>4}: Keras {100 * keras_acc:.2f}%, LiteRT {_pct(row['litert_accuracy'])}, "
              f"TFLM {_pct(row['tflm_accuracy'])} (identical: {row['litert_equals_tflm']}); flash "
              f"{report.flash_bytes:,} B (predicted {summary['flash_bytes']:,}), file {report.file_bytes:,} B, "
              f"arena {report.arena_bytes:,} B; levels {row['levels_by_width']}", flush=True)
    print(f"  {label}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | policy | packing | avg bits | Keras QAT | LiteRT | TFLite Micro | LiteRT = TFLM | flash B "
             "(file / predicted) | file B | arena B | most levels per channel, by width |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        levels = ", ".join(f"{w}b: {n}" for w, n in r["levels_by_width"].items())
        lines.append(
            f"| {r['model']} | {r['policy']} | {r['packing']} | {r['avg_weight_bits']:.2f} | {_pct(r['keras_accuracy'])} "
            f"| {_pct(r['litert_accuracy'])} | {_pct(r['tflm_accuracy'])} | "
            f"{'-' if r['litert_equals_tflm'] is None else ('yes' if r['litert_equals_tflm'] else 'NO')} | "
            f"{r['flash_bytes']:,} / {r['flash_bytes_predicted']:,} | {r['file_bytes']:,} | {r['arena_bytes']:,} | "
            f"{levels} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.channel_export", description=__doc__.split("\n")[0])
    p.add_argument("--models", default="small_cnn_fmnist,dscnn_fmnist", help="zoo checkpoints, comma-separated. "
                   "Default: small_cnn_fmnist,dscnn_fmnist")
    p.add_argument("--policies", default="channel,channel+prune,uniform 4",
                   help="comma-separated, of: channel, channel+prune, uniform 4. Default: all three")
    p.add_argument("--qat-epochs", type=int, default=2, help="QAT fine-tuning epochs per policy. Default: 2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/channel_export", help="folder for the .tflite files and results.json")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    import tfmpq
    from tfmpq import data, zoo

    roles = data.roles(data.load("default"))
    t0 = time.perf_counter()
    rows = []
    for name in args.models.split(","):
        model = zoo.resolve_model(f"zoo:{name}")
        print(f"{name}: {len(tfmpq.quantizable_groups(model))} groups", flush=True)
        makers = {"channel": lambda: channel_policy(model), "channel+prune": lambda: channel_policy(model, prune=True),
                  "uniform 4": lambda: tfmpq.QuantPolicy.uniform(model, 4, 8)}
        for label in args.policies.split(","):
            rows += measure(name, label, model, makers[label](), roles, args)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"args": vars(args), "rows": rows, "seconds": time.perf_counter() - t0}, f, indent=1)
    print()
    print(markdown(rows))
    print(f"\n{time.perf_counter() - t0:.0f} s; files and results.json in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
