"""Make ``fashion_mnist_subset.npz``, the class-balanced Fashion-MNIST subset tfmpq ships.

The subset lets ``tfmpq.data.load("default")``, the tests and the demo run with no network and no
Debian package. It is made from the original Fashion-MNIST IDX files (the Debian package
``dataset-fashion-mnist`` installs them in ``/usr/share/datasets/fashion-mnist``): for each of the
10 classes, ``num_train // 10`` training and ``num_test // 10`` test images are drawn without
replacement with a seeded ``numpy.random.default_rng``, then each split is shuffled with the same
generator. Pixels stay uint8 (0..255); labels are uint8 class ids 0..9.

Usage:

    python -m tfmpq.data.make_subset [--src /usr/share/datasets/fashion-mnist] \
        [--num-train 10000] [--num-test 2000] [--seed 0] [--out tfmpq/data/fashion_mnist_subset.npz]
"""
from __future__ import annotations

import argparse
import gzip
import os

import numpy as np

NUM_CLASSES = 10
FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path: str) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes.

    Args:
        path: Path to an IDX file, gzipped when it ends in ``.gz``.

    Returns:
        A uint8 array of the shape the IDX header states.

    Raises:
        ValueError: If the file is not an IDX file of unsigned bytes.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte, the only type Fashion-MNIST uses
        raise ValueError(f"Invalid IDX file: expected unsigned-byte data (type 0x08). Received: magic={magic:#x} in {path}.")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def balanced_indices(labels: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    """Pick ``num // num_classes`` indices of each class, then shuffle them.

    Args:
        labels: Integer class ids.
        num: Total number of indices; must be a multiple of the number of classes.
        rng: The generator that draws and shuffles.

    Returns:
        An int64 array of ``num`` indices into ``labels``.

    Raises:
        ValueError: If ``num`` is not a multiple of the class count or a class has too few samples.
    """
    classes = np.unique(labels)
    if num % len(classes):
        raise ValueError(f"Invalid value for `num`: expected a multiple of {len(classes)}. Received: num={num}.")
    per_class = num // len(classes)
    picked = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError(f"Class {c} has {len(idx)} samples; {per_class} requested.")
        picked.append(rng.choice(idx, size=per_class, replace=False))
    out = np.concatenate(picked)
    rng.shuffle(out)
    return out


def make_subset(src: str, out: str, num_train: int = 10000, num_test: int = 2000, seed: int = 0) -> dict:
    """Write the balanced subset to ``out`` with ``np.savez_compressed``.

    Args:
        src: Folder with the four Fashion-MNIST IDX files.
        out: Path of the ``.npz`` to write.
        num_train: Training images, a multiple of 10. Defaults to 10000.
        num_test: Test images, a multiple of 10. Defaults to 2000.
        seed: Seed of the generator that picks the images. Defaults to 0.

    Returns:
        The arrays written, by name.
    """
    raw = {k: read_idx(os.path.join(src, f)) for k, f in FILES.items()}
    rng = np.random.default_rng(seed)
    tr = balanced_indices(raw["y_train"], num_train, rng)
    te = balanced_indices(raw["y_test"], num_test, rng)
    arrays = {
        "x_train": raw["x_train"][tr], "y_train": raw["y_train"][tr],
        "x_test": raw["x_test"][te], "y_test": raw["y_test"][te],
    }
    np.savez_compressed(out, **arrays)
    return arrays


def main(argv: list[str] | None = None) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", default=os.path.join(here, "fashion_mnist_subset.npz"))
    p.add_argument("--num-train", type=int, default=10000)
    p.add_argument("--num-test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    arrays = make_subset(a.src, a.out, a.num_train, a.num_test, a.seed)
    print(f"wrote {a.out}: {os.path.getsize(a.out) / 1e6:.2f} MB; "
          + ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
