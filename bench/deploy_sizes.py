"""Deployment sizes: what each packing of the same QAT model costs in file, flash and arena, and its accuracy.

For each model (the demo CNN ``zoo:small_cnn_fmnist`` and zoo models trained here for a few epochs) and
each policy (uniform 8 bits, uniform 4 bits, and a mixed policy: see ``mixed_bits``), the float model
is fine-tuned with QAT, then exported once per packing:

- ``int8``: sub-8-bit weights on their grid in int8 containers;
- ``int4``: <= 4-bit groups as native INT4 tensors;
- ``lut``:  2..7-bit groups as TFLite Micro LUT indices + value tables (DECODE operators);
- ``auto``: per group the smallest storage that runs (INT4 at <= 4 bits, LUT at 5..7, int8 at 8).

Measured per file: bytes on disk, flash bytes of the weights as stored (``ExportReport.flash_bytes``,
and the value ``tfmpq.metrics.summary`` predicted from the policy alone), TFLite Micro arena bytes and
the part of it the packing adds (INT4 unpacking / LUT decoding scratch), and accuracy on the test
images on LiteRT (reference kernels; not for LUT files, which it cannot run) and TFLite Micro, with
whether the TFLite Micro outputs equal the int8-container file's outputs bit for bit.

Data: tfmpq's Fashion-MNIST subset (``tfmpq.data.load("default")``: 9,000 training images after
holding out 1,000, and 2,000 test images), zero-padded to 32x32 for MobileNet.

Run: python -m bench.deploy_sizes [--models small_cnn_fmnist,mobilenet_v1,mlp] [--qat-epochs 1]
     [--out runs/deploy_sizes]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

PACKINGS = ("int8", "int4", "lut", "auto")
#: Float training epochs of the zoo models trained here (the demo CNN is a shipped checkpoint).
FLOAT_EPOCHS = {"mobilenet_v1": 3, "mlp": 8}


def mixed_bits(groups) -> list[int]:
    """A mixed policy that puts the bits where the weights are: the first and last groups at 8 bits
    (with 4 groups or more), then of the others the larger half (by kernel weights) at 3 bits and the
    smaller half at 5 bits."""
    bits = [8] * len(groups)
    middle = list(range(1, len(groups) - 1)) if len(groups) >= 4 else list(range(len(groups)))
    ranked = sorted(middle, key=lambda i: -groups[i].kernel_params)
    for rank, i in enumerate(ranked):
        bits[i] = 3 if rank < (len(ranked) + 1) // 2 else 5
    return bits


def float_model(name: str, seed: int):
    """(float model, (x_train, y_train), (x_test, y_test)) for a zoo name or the demo checkpoint."""
    from models import train_demo
    from tfmpq import data, zoo

    ds = data.load("default")
    if name == "small_cnn_fmnist":
        model = zoo.resolve_model("zoo:small_cnn_fmnist")
    else:
        model, _, _ = train_demo.train(name, epochs=FLOAT_EPOCHS.get(name, 3), seed=seed, verbose=0)
        if name in train_demo.MIN_SIZE_32:
            ds = data.pad_to(ds, 32)
    (x_tr, y_tr), _ = data.split_validation(ds, 0.1, seed=seed)  # the split train_demo trained on
    return model, (x_tr, y_tr), (ds.x_test, ds.y_test)


def qat_model(model, bits, train, epochs: int, seed: int):
    import tfmpq
    from tfmpq._keras import keras

    keras.utils.set_random_seed(seed)
    policy = tfmpq.QuantPolicy.from_bits(model, weight_bits=bits, activation_bits=8)
    qat = tfmpq.quantize_model(model, policy)
    qat.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", ["accuracy"])
    if epochs:
        qat.fit(*train, epochs=epochs, batch_size=64, verbose=0)
    else:
        tfmpq.calibrate(qat, train[0][:512])
    return qat, policy


def measure(name: str, label: str, model, bits, train, test, args) -> list[dict]:
    """Fine-tunes one policy and exports it with every packing; one row per packing."""
    from tfmpq import metrics
    from tfmpq.accuracy import model_accuracy
    from tfmpq.export import export_tflite, run_tflite

    t0 = time.perf_counter()
    qat, policy = qat_model(model, bits, train, args.qat_epochs, args.seed)
    x, y = test
    keras_acc = model_accuracy(qat, x, y)
    summary = metrics.summary(model, policy)
    rows, int8_out = [], None
    for packing in PACKINGS:
        if (packing == "int4" and min(bits) > 4) or (packing == "lut" and min(bits) > 7):
            continue  # nothing to pack: export_tflite refuses (the int8 row stands for it)
        path = os.path.join(args.out, f"{name}_{label}_{packing}.tflite")
        report = export_tflite(qat, path, representative_data=train[0][:256], packed=packing)
        tflm_out = run_tflite(path, x, "tflm")
        if packing == "int8":
            int8_out = tflm_out
        litert_acc = None
        if "litert" in report.runtimes:
            litert_out = run_tflite(path, x, "litert")
            litert_acc = float(np.mean(litert_out.argmax(-1) == y))
        key = "flash_bytes" if packing == "auto" else f"flash_bytes_{packing}"
        storages = [g["storage"] for g in report.groups]
        rows.append({
            "model": name, "policy": label, "weight_bits": list(bits), "packing": packing,
            "storage": {s: storages.count(s) for s in ("int8", "int4", "lut") if s in storages},
            "file_bytes": report.file_bytes, "flash_bytes": report.flash_bytes,
            "flash_bytes_predicted": summary[key], "arena_bytes": report.arena_bytes,
            "scratch_bytes": report.scratch_bytes, "keras_accuracy": keras_acc,
            "largest_packed_kernel": max([g["params"] for g in report.groups if g["storage"] != "int8"] or [0]),
            "litert_accuracy": litert_acc, "tflm_accuracy": float(np.mean(tflm_out.argmax(-1) == y)),
            "litert_equals_tflm": None if litert_acc is None else bool(np.array_equal(litert_out, tflm_out)),
            "tflm_equals_int8": bool(np.array_equal(tflm_out, int8_out)), "runtimes": report.runtimes,
            "notes": report.notes,
        })
        print(f"  {label:>6} {packing:>5}: file {report.file_bytes:>7,} B, flash {report.flash_bytes:>7,} B "
              f"(predicted {summary[key]:,}), arena {report.arena_bytes:,} B, "
              f"TFLM {100 * rows[-1]['tflm_accuracy']:.2f}%"
              f"{'' if litert_acc is None else f', LiteRT {100 * litert_acc:.2f}%'}", flush=True)
    print(f"  {label}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def markdown(rows: list[dict]) -> str:
    head = ("| model | policy (weight bits) | packing | kernels | file B | flash B | arena B (scratch) | Keras QAT "
            "| LiteRT | TFLite Micro | = int8 file |")
    lines = [head, "|" + "---|" * 3 + "---|" + "---:|" * 6 + "---|"]
    for r in rows:
        kernels = " + ".join(f"{n} {s}" for s, n in r["storage"].items())
        bits = ",".join(map(str, r["weight_bits"])) if len(r["weight_bits"]) <= 6 else f"{r['policy']}"
        lines.append(
            f"| {r['model']} | {r['policy']} ({bits}) | {r['packing']} | {kernels} | {r['file_bytes']:,} | "
            f"{r['flash_bytes']:,} | {r['arena_bytes']:,} ({r['scratch_bytes']:,}) | {_pct(r['keras_accuracy'])} | "
            f"{_pct(r['litert_accuracy'])} | {_pct(r['tflm_accuracy'])} | {'yes' if r['tflm_equals_int8'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.deploy_sizes", description=__doc__.split("\n")[0])
    p.add_argument("--models", default="small_cnn_fmnist,mobilenet_v1,mlp",
                   help="comma-separated: small_cnn_fmnist (the shipped demo checkpoint) and/or zoo model names "
                        "trained here. Default: small_cnn_fmnist,mobilenet_v1,mlp")
    p.add_argument("--qat-epochs", type=int, default=1, help="QAT fine-tuning epochs per policy (0: calibrate "
                                                              "only). Default: 1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/deploy_sizes", help="folder for the .tflite files and results.json")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    import tfmpq

    t0 = time.perf_counter()
    rows = []
    for name in args.models.split(","):
        t_model = time.perf_counter()
        model, train, test = float_model(name, args.seed)
        groups = tfmpq.quantizable_groups(model)
        print(f"{name}: {model.count_params():,} parameters, {len(groups)} groups "
              f"(float model ready in {time.perf_counter() - t_model:.0f} s)", flush=True)
        policies = {"8-bit": [8] * len(groups), "4-bit": [4] * len(groups), "mixed": mixed_bits(groups)}
        for label, bits in policies.items():
            rows += measure(name, label, model, bits, train, test, args)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"args": vars(args), "rows": rows, "seconds": time.perf_counter() - t0}, f, indent=2)
    print()
    print(markdown(rows))
    print(f"\n{time.perf_counter() - t0:.0f} s; files and results.json in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
