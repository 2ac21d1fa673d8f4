"""Export of a QAT model that was never trained nor calibrated (issue 27, item 5), as a new user tries it.

A Keras 3 Sequential CNN is trained in float on tfmpq's Fashion-MNIST subset (9,000 training images, the
2,000 test images), quantized at 8 bits with ``tfmpq.quantize_model`` and exported at once with
``tfmpq.export_tflite(qat, path, representative_data=x_train[:256])``; then the same after an explicit
``tfmpq.calibrate(qat, x_train[:256])``. Both files are scored on LiteRT (reference kernels) on the 2,000
test images, beside the float Keras model.

Before issue 27 the first file kept the activation ranges' initial [-6, 6]; since, the export calibrates
the ranges never set from ``representative_data`` (and warns), so the two files are the same. Run it on
both versions of tfmpq to see the difference (it uses only the public API of both).

Run: python -m bench.never_calibrated [--epochs 1] [--seed 0] [--json runs/never_calibrated.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="float training epochs (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow  # noqa: F401  (TensorFlow and Keras 3 first, as in a Colab notebook)
    import keras

    here = os.path.dirname(os.path.abspath(__file__))
    with np.load(os.path.join(here, "..", "tfmpq", "data", "fashion_mnist_subset.npz")) as d:
        x, y = d["x_train"][:9000, ..., None] / np.float32(255), d["y_train"][:9000].astype("int64")
        xt, yt = d["x_test"][..., None] / np.float32(255), d["y_test"].astype("int64")
    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=args.epochs, batch_size=64, verbose=0)
    float_acc = float(np.mean(model.predict(xt, verbose=0).argmax(-1) == yt))

    import tfmpq  # after the Keras 3 model is trained, as in the notebook

    results = {"float_keras": float_acc, "epochs": args.epochs, "seed": args.seed, "tfmpq": tfmpq.__file__}
    with tempfile.TemporaryDirectory() as tmp:
        for label, calibrate_first in (("exported_as_is", False), ("after_tfmpq_calibrate", True)):
            qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 8))
            if calibrate_first:
                tfmpq.calibrate(qat, x[:256])
            path = os.path.join(tmp, f"{label}.tflite")
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                tfmpq.export_tflite(qat, path, representative_data=x[:256])
            results[label] = tfmpq.evaluate_tflite(path, xt, yt, runtime="litert")
            results[label + "_warned"] = any("never set" in str(w.message) for w in record)
    print(json.dumps(results, indent=2))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
