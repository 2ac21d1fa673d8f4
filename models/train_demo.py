"""Train the float ``small_cnn`` on tfmpq's built-in Fashion-MNIST subset and save the checkpoint.

The checkpoint ``models/small_cnn_fmnist.keras`` (tf_keras format, no optimizer state) is what
``tfmpq.zoo.resolve_model("zoo:small_cnn_fmnist")`` and the demo load. Seeded; about a minute on
two CPU cores. ``--model`` trains another zoo model the same way (the float accuracies in
models/README.md); models that need 32x32 inputs get the 28x28 images zero-padded to 32x32.

Usage:

    python -m models.train_demo [--epochs 8] [--seed 0] [--out models/small_cnn_fmnist.keras]
    python -m models.train_demo --model resnet20 --epochs 3 --out /tmp/resnet20.keras
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tfmpq import data
from tfmpq._keras import keras, tf
from tfmpq import zoo

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "small_cnn_fmnist.keras")


BN_MOMENTUM = 0.9

# Builders whose architecture needs inputs of at least 32x32 (see models/mobilenet.py).
MIN_SIZE_32 = ("mobilenet_v1", "mobilenet_v2")


def _pad_to(x: np.ndarray, size: int) -> np.ndarray:
    """Zero-pads (N, H, W, C) images symmetrically to ``size`` x ``size``."""
    dh, dw = size - x.shape[1], size - x.shape[2]
    return np.pad(x, ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)))


def train(model_name: str = "small_cnn", epochs: int = 8, batch_size: int = 64, learning_rate: float = 2e-3,
          seed: int = 0, validation_fraction: float = 0.1, verbose: int = 2) -> tuple:
    """Train a zoo model (``small_cnn`` by default) on ``tfmpq.data.load("default")``.

    Args:
        model_name: One of ``tfmpq.zoo.names()``. Defaults to ``"small_cnn"``.
        epochs: Training epochs. Defaults to 8.
        batch_size: Batch size. Defaults to 64.
        learning_rate: Peak Adam learning rate, decayed to 0 by a cosine schedule. Defaults to 2e-3.
        seed: Seed of the weights, the validation split and the shuffling. Defaults to 0.
        validation_fraction: Share of the 10,000 training images held out to report validation
            accuracy. Defaults to 0.1.
        verbose: Keras ``fit`` verbosity. Defaults to 2.

    Returns:
        ``(model, test_accuracy, seconds)``: the trained model, its accuracy on the 2,000 test
        images and the training wall time.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    ds = data.load("default")
    if model_name in MIN_SIZE_32:
        ds.x_train, ds.x_test = _pad_to(ds.x_train, 32), _pad_to(ds.x_test, 32)
        ds.input_shape = ds.x_train.shape[1:]
    (x_tr, y_tr), (x_val, y_val) = data.split_validation(ds, validation_fraction, seed=seed)
    model = zoo.get(model_name, input_shape=tuple(ds.input_shape), num_classes=ds.num_classes)
    # A run of a few hundred steps is too short for BN moving averages with Keras's momentum 0.99
    # (0.999 in MobileNetV2) to forget their initial variance of 1; inference would then scale
    # by the wrong statistics. 0.9 converges within ~50 steps.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = min(layer.momentum, BN_MOMENTUM)
    steps = epochs * -(-len(y_tr) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_tr, y_tr, batch_size=batch_size, epochs=epochs, validation_data=(x_val, y_val),
              shuffle=True, verbose=verbose)
    seconds = time.perf_counter() - start
    _, test_accuracy = model.evaluate(ds.x_test, ds.y_test, batch_size=256, verbose=0)
    return model, float(test_accuracy), seconds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the float small_cnn demo checkpoint.")
    p.add_argument("--model", default="small_cnn", choices=zoo.names())
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="Defaults to models/small_cnn_fmnist.keras for small_cnn, "
                                                 "no file for other models.")
    a = p.parse_args(argv)
    out = a.out or (DEFAULT_OUT if a.model == "small_cnn" else None)
    model, acc, seconds = train(a.model, epochs=a.epochs, seed=a.seed)
    print(f"{a.model}: test accuracy {acc:.4f} after {a.epochs} epochs ({model.count_params()} parameters), "
          f"trained in {seconds:.0f} s")
    if out is None:
        return
    # An uncompiled copy: the .keras file then holds no optimizer state (about 3x smaller).
    inference = keras.Model.from_config(model.get_config())
    inference.set_weights(model.get_weights())
    inference.save(out)
    print(f"saved {out} ({os.path.getsize(out) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
