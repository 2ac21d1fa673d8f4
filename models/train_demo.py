"""Train a float zoo model on a named dataset, save the checkpoint and a JSON record of how it was made.

Every run holds out the same validation split, ``tfmpq.data.split_validation(ds, 0.1, seed=0)``
(:data:`VALIDATION`), trains on the rest, picks the checkpoint by validation accuracy only (the
epoch with the best one; with the cosine schedule that is usually one of the last) and reports the
test accuracy of that checkpoint without using it for any choice. Seeded, with TensorFlow's
deterministic ops. The checkpoint is saved without optimizer state; next to ``NAME.keras`` goes
``NAME.json`` (:func:`write_record`), which ``tfmpq.zoo.checkpoint_info`` reads.

The shipped checkpoints were made by:

    python -m models.train_demo                         # small_cnn on the built-in subset -> small_cnn_fmnist.keras
    python -m models.train_demo --model dscnn --dataset fashion_mnist --epochs 30 --augment flip_shift \\
        --out tfmpq/zoo/checkpoints/dscnn_fmnist.keras

Other zoo models train the same way (models/README.md); models that need 32x32 inputs get the
28x28 images zero-padded to 32x32. ``--evaluate PATH`` only measures a saved checkpoint's
validation and test accuracy (how the record of ``small_cnn_fmnist`` got its accuracies).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time

import numpy as np

from tfmpq import data
from tfmpq._keras import keras, tf
from tfmpq import zoo

MODELS_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(zoo.CHECKPOINT_DIR, "small_cnn_fmnist.keras")

# The one validation rule of every shipped checkpoint (and of the searches that use them).
VALIDATION = {"fraction": 0.1, "seed": 0}
BN_MOMENTUM = 0.9
# The test images the record scores separately, so that a quick test can check the checkpoint exactly.
NUM_TEST_HEAD = 2000

# Builders whose architecture needs inputs of at least 32x32 (see tfmpq/zoo/mobilenet.py).
MIN_SIZE_32 = ("mobilenet_v1", "mobilenet_v2")
# Training-time augmentations: "none", or "flip_shift" (a horizontal flip with probability 1/2, then
# a shift by up to 2 pixels each way with zero fill; the flips and pad-and-crop of Zhong et al. 2017,
# "Random Erasing Data Augmentation", Sec. 4.1, used there on Fashion-MNIST as well).
AUGMENTATIONS = {"none": None, "flip_shift": {"horizontal_flip": 0.5, "max_shift": 2}}


def load_splits(model_name: str, dataset: str) -> tuple:
    """The dataset and its fixed train / validation split, padded to 32x32 where the model needs it.

    Args:
        model_name: The zoo model the data is for.
        dataset: A name or path for ``tfmpq.data.load``.

    Returns:
        ``(ds, (x_train, y_train), (x_val, y_val), padded_to)``; ``padded_to`` is 32 or None.
    """
    ds = data.load(dataset)
    padded_to = None
    if model_name in MIN_SIZE_32:
        padded_to = 32
        ds = data.pad_to(ds, 32)
    train, val = data.split_validation(ds, VALIDATION["fraction"], seed=VALIDATION["seed"])
    return ds, train, val, padded_to


def flip_shift(x: np.ndarray, rng: np.random.Generator, flip: float = 0.5, max_shift: int = 2) -> np.ndarray:
    """Randomly flips (N, H, W, C) images left-right, then shifts each by up to ``max_shift`` pixels.

    Args:
        x: The images.
        rng: The random generator that draws the flips and shifts.
        flip: Probability of a horizontal flip. Defaults to 0.5.
        max_shift: Largest shift along each axis; the uncovered border is zero. Defaults to 2.

    Returns:
        New images of the same shape and dtype.
    """
    n, h, w = x.shape[:3]
    flipped = rng.random(n) < flip
    x = np.where(flipped[:, None, None, None], x[:, :, ::-1], x)
    s = max_shift
    padded = np.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))
    # windows[i, dy, dx] is the (C, H, W) crop of image i at offset (dy, dx) of the padded image.
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * s + 1, size=(2, n))
    return np.ascontiguousarray(np.moveaxis(windows[np.arange(n), dy, dx], 1, -1))


class _AugmentedBatches(keras.utils.Sequence):
    """Shuffled batches, augmented by :func:`flip_shift`; epoch e, batch i always get the same draw.

    The draws come from ``default_rng((seed, epoch, batch))``, so they do not depend on the order in
    which Keras asks for batches (its enqueuer prefetches them on a thread).
    """

    def __init__(self, x, y, batch_size: int, seed: int, flip: float, max_shift: int):
        super().__init__()
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.flip, self.max_shift = flip, max_shift
        self.epoch = 0
        self._shuffle()

    def _shuffle(self):
        self.order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.y))

    def __len__(self):
        return -(-len(self.y) // self.batch_size)

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        rng = np.random.default_rng((self.seed, self.epoch, i))
        return flip_shift(self.x[idx], rng, self.flip, self.max_shift), self.y[idx]

    def on_epoch_end(self):
        self.epoch += 1
        self._shuffle()


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` (argmax of the outputs)."""
    predictions = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=1) == y))


def evaluate_checkpoint(model, ds, val: tuple) -> dict:
    """The accuracies a record holds: validation, test, and test on the first 2,000 test images.

    Returns:
        ``{"val_accuracy", "test_accuracy", "test_accuracy_first_2000"}`` (the last is None when
        the test split has no more than 2,000 images, where it would equal ``test_accuracy``).
    """
    out = {"val_accuracy": accuracy(model, *val), "test_accuracy": accuracy(model, ds.x_test, ds.y_test)}
    head = None
    if len(ds.y_test) > NUM_TEST_HEAD:
        head = accuracy(model, ds.x_test[:NUM_TEST_HEAD], ds.y_test[:NUM_TEST_HEAD])
    out[f"test_accuracy_first_{NUM_TEST_HEAD}"] = head
    return out


class _BestValidation(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the highest validation accuracy (the earliest on a tie)."""

    def __init__(self):
        super().__init__()
        self.best, self.best_epoch, self.weights = -1.0, None, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if value is not None and value > self.best:
            self.best, self.best_epoch, self.weights = value, epoch + 1, self.model.get_weights()


def train(model_name: str = "small_cnn", dataset: str = "default", epochs: int = 8, batch_size: int = 64,
          learning_rate: float = 2e-3, seed: int = 0, model_args: dict | None = None, augment: str = "none",
          verbose: int = 2) -> tuple:
    """Train a zoo model on ``dataset`` minus the fixed validation split.

    Adam with a cosine decay of the learning rate from ``learning_rate`` to 0 over all steps
    (Loshchilov & Hutter 2017, SGDR, Sec. 3, without restarts). The returned model holds the
    weights of the epoch with the best validation accuracy.

    Args:
        model_name: One of ``tfmpq.zoo.names()``. Defaults to ``"small_cnn"``.
        dataset: Passed to ``tfmpq.data.load``. Defaults to ``"default"`` (the built-in subset).
        epochs: Training epochs. Defaults to 8.
        batch_size: Batch size. Defaults to 64.
        learning_rate: Peak Adam learning rate. Defaults to 2e-3.
        seed: Seed of the weights, the shuffling and dropout (the validation split always uses
            ``VALIDATION["seed"]``). Defaults to 0.
        model_args: Keyword arguments for the builder. Defaults to None.
        augment: One of :data:`AUGMENTATIONS`: ``"none"`` or ``"flip_shift"`` (training images only;
            validation and test images are never changed). Defaults to ``"none"``.
        verbose: Keras ``fit`` verbosity. Defaults to 2.

    Returns:
        ``(model, record)``: the trained model and the dict :func:`write_record` saves (less the
        command, the checkpoint name, the wall time of the whole command and :func:`environment`).

    Raises:
        ValueError: For an unknown ``augment``.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"Invalid value for `augment`: expected one of {list(AUGMENTATIONS)}. "
                         f"Received: augment={augment!r}.")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    ds, (x_tr, y_tr), val, padded_to = load_splits(model_name, dataset)
    model_args = dict(model_args or {})
    model = zoo.get(model_name, input_shape=tuple(ds.input_shape), num_classes=ds.num_classes, **model_args)
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
    best = _BestValidation()
    start = time.perf_counter()
    if AUGMENTATIONS[augment] is None:
        history = model.fit(x_tr, y_tr, batch_size=batch_size, epochs=epochs, validation_data=val, shuffle=True,
                            callbacks=[best], verbose=verbose)
    else:
        options = AUGMENTATIONS[augment]
        batches = _AugmentedBatches(x_tr, y_tr, batch_size, seed, options["horizontal_flip"], options["max_shift"])
        history = model.fit(batches, epochs=epochs, validation_data=val, shuffle=False, callbacks=[best],
                            verbose=verbose)
    seconds = time.perf_counter() - start
    model.set_weights(best.weights)
    record = {
        "model": model_name,
        "model_args": model_args,
        "dataset": ds.name,
        "dataset_source": ds.source,
        "validation": dict(VALIDATION),
        "num_train": int(len(y_tr)),
        "num_validation": int(len(val[1])),
        "num_test": int(len(ds.y_test)),
        "input_shape": [int(d) for d in ds.input_shape],
        "padded_to": padded_to,
        "num_classes": int(ds.num_classes),
        "epochs": epochs,
        "best_epoch": best.best_epoch,
        "checkpoint_choice": "epoch with the highest validation accuracy (earliest on a tie)",
        "batch_size": batch_size,
        "augmentation": None if AUGMENTATIONS[augment] is None else {"name": augment, **AUGMENTATIONS[augment]},
        "optimizer": {"name": "Adam", "learning_rate": learning_rate},
        "schedule": {"name": "cosine_decay", "to": 0.0, "decay_steps": steps},
        "bn_momentum": sorted({float(layer.momentum) for layer in model.layers
                               if isinstance(layer, keras.layers.BatchNormalization)}),
        "seed": seed,
        "deterministic_ops": True,
        **evaluate_checkpoint(model, ds, val),
        "params": int(model.count_params()),
        "history": {k: [round(float(v), 6) for v in vs] for k, vs in history.history.items()},
        "train_seconds": round(seconds, 1),
    }
    return model, record


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=MODELS_DIR, capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """Where a record was made: tfmpq's git commit (and whether the tree had changes), versions, CPUs."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": _git("rev-parse", "HEAD"), "git_dirty": None if status is None else bool(status),
            "tensorflow": tf.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU"))}


def write_record(path: str, record: dict) -> None:
    """Writes ``record`` as indented JSON to ``path`` (atomically: a temporary file, then a rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def save_checkpoint(model, path: str) -> None:
    """Saves an uncompiled copy of ``model``: the .keras file then holds no optimizer state (~3x smaller)."""
    inference = keras.Model.from_config(model.get_config())
    inference.set_weights(model.get_weights())
    inference.save(path)


def _command(argv: list[str]) -> str:
    return shlex.join(["python", "-m", "models.train_demo", *argv])


def main(argv: list[str] | None = None) -> None:
    started = time.perf_counter()
    where = environment()  # before training: the code that trains, not what changed during the run
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description="Train a float zoo model and save it with a JSON record.")
    p.add_argument("--model", default="small_cnn", choices=zoo.names())
    p.add_argument("--dataset", default="default", help="A tfmpq.data name or path. Defaults to the built-in subset.")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", default="none", choices=list(AUGMENTATIONS),
                   help="Augmentation of the training images. Defaults to none.")
    p.add_argument("--model-args", default="{}", help="Builder keyword arguments as JSON, e.g. '{\"dropout\": 0.1}'.")
    p.add_argument("--out", default=None, help="Defaults to tfmpq/zoo/checkpoints/small_cnn_fmnist.keras for small_cnn on the "
                                                 "default dataset, no file otherwise. NAME.json goes next to it.")
    p.add_argument("--evaluate", metavar="PATH", default=None,
                   help="Only print the validation and test accuracy of a saved checkpoint on --dataset.")
    a = p.parse_args(argv)
    try:
        model_args = json.loads(a.model_args)
    except json.JSONDecodeError as e:
        p.error(f"--model-args: expected a JSON object. Received: {a.model_args!r} ({e}).")
    if not isinstance(model_args, dict):
        p.error(f"--model-args: expected a JSON object. Received: {a.model_args!r}.")
    if a.evaluate:
        model = zoo.resolve_model(a.evaluate)
        ds, _, val, _ = load_splits(a.model, a.dataset)
        print(json.dumps({"checkpoint": a.evaluate, "dataset": ds.name, "validation": VALIDATION,
                          **evaluate_checkpoint(model, ds, val)}, indent=1))
        return
    out = a.out or (DEFAULT_OUT if (a.model, a.dataset) == ("small_cnn", "default") else None)
    model, record = train(a.model, a.dataset, epochs=a.epochs, batch_size=a.batch_size,
                          learning_rate=a.learning_rate, seed=a.seed, model_args=model_args, augment=a.augment)
    print(f"{a.model}: val accuracy {record['val_accuracy']:.4f} (epoch {record['best_epoch']} of {a.epochs}), "
          f"test accuracy {record['test_accuracy']:.4f}, {record['params']} parameters, "
          f"trained in {record['train_seconds']:.0f} s")
    if out is None:
        return
    save_checkpoint(model, out)
    name = os.path.splitext(os.path.basename(out))[0]
    record = {"name": name, "checkpoint": os.path.basename(out), **record,
              "wall_seconds": round(time.perf_counter() - started, 1), "command": _command(argv),
              **where}
    write_record(os.path.splitext(out)[0] + ".json", record)
    print(f"saved {out} ({os.path.getsize(out) / 1024:.0f} KiB) and its record {name}.json")


if __name__ == "__main__":
    main()
