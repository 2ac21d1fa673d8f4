"""Datasets for tfmpq: one call, local copies first, and a built-in default that needs no network.

``load(name_or_path)`` returns a :class:`Dataset` of float32 images scaled to [0, 1] with shape
``(N, H, W, C)`` and int64 labels. Known names are listed by :func:`names`; a ``.npz`` file with
``x_train``/``y_train``/``x_test``/``y_test`` or a folder of images (one sub-folder per class) works
too. Named datasets are looked for, in order, in ``$TFMPQ_DATA``, the Keras cache
(``$KERAS_HOME/datasets``, default ``~/.keras/datasets``, with Keras's own file names) and, for
Fashion-MNIST, ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``); only when
none holds a copy does it ask Keras to download one.

Example:

>>> from tfmpq import data
>>> ds = data.load("default", num_train=1000, num_test=200)
>>> ds.x_train.shape, ds.num_classes
((1000, 28, 28, 1), 10)
>>> (x_tr, y_tr), (x_val, y_val) = data.split_validation(ds, 0.1)
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import pickle
import numpy as np

from tfmpq.errors import TfmpqError

__all__ = ["Dataset", "DatasetNotFoundError", "Roles", "load", "names", "roles", "split_validation", "balanced_subset", "pad_to",
           "VALIDATION_FRACTION", "VALIDATION_SEED"]

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_subset.npz")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
# The names Keras gives its cached copies in ~/.keras/datasets.
KERAS_NAMES = {"fashion_mnist": "fashion-mnist", "mnist": "mnist.npz",
               "cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


class DatasetNotFoundError(TfmpqError, FileNotFoundError):
    """A dataset with no local copy that could not be downloaded either."""


@dataclasses.dataclass
class Dataset:
    """A classification dataset split into train and test.

    Attributes:
        x_train: float32 inputs in [0, 1], shape ``(N, H, W, C)`` for images.
        y_train: int64 class ids, shape ``(N,)``.
        x_test: float32 test inputs, same layout as ``x_train``.
        y_test: int64 test class ids.
        name: The dataset's name, or the path it was read from.
        num_classes: Number of classes.
        input_shape: Shape of one input, e.g. ``(28, 28, 1)``.
        class_names: Name of each class id, when known.
        source: Where the data was read from (a path, ``"keras download"`` or ``"scikit-learn"``).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    num_classes: int
    input_shape: tuple
    class_names: tuple | None = None
    source: str = ""

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")


# ------------------------------------------------------------------ where local copies may be

def _keras_cache() -> str:
    return os.path.join(os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")), "datasets")


def _roots() -> list[str]:
    """Folders searched for named datasets, in order: $TFMPQ_DATA, then the Keras cache."""
    roots = [os.environ[v] for v in ("TFMPQ_DATA",) if os.environ.get(v)]
    return roots + [_keras_cache()]


def _candidates(name: str) -> list[str]:
    """Every path (in search order) that may hold a local copy of the named dataset."""
    out = []
    for root in _roots():
        out += [os.path.join(root, f"{name}.npz"), os.path.join(root, KERAS_NAMES[name])]
    if name == "fashion_mnist":
        out.append(DEBIAN_FASHION_MNIST)
    return list(dict.fromkeys(out))  # mnist's Keras name is mnist.npz: list it once


# ------------------------------------------------------------------ readers of each format

def _read_idx(path: str) -> np.ndarray:
    """Reads a (gzipped) IDX file of unsigned bytes, as MNIST and Fashion-MNIST ship."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08:
        raise ValueError(f"Invalid IDX file: expected unsigned-byte data. Received: magic={magic:#x} in {path}.")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_idx_dir(path: str) -> tuple:
    files = [os.path.join(path, f) for f in _FASHION_FILES]
    return tuple(_read_idx(f) for f in files)


def _read_npz(path: str) -> tuple:
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
        if missing:
            raise ValueError(f"Invalid dataset file {path}: expected arrays x_train, y_train, x_test, y_test. "
                             f"Received: {sorted(z.files)} (missing {missing}).")
        return z["x_train"], z["y_train"], z["x_test"], z["y_test"]


def _read_cifar(path: str, fine: bool) -> tuple:
    """Reads the python-pickle CIFAR layout Keras caches (cifar-10-batches-py / cifar-100-python)."""
    def batch(fname: str) -> tuple:
        with open(os.path.join(path, fname), "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.asarray(d[b"fine_labels" if fine else b"labels"])
        return x, y

    if fine:
        (xtr, ytr), (xte, yte) = batch("train"), batch("test")
    else:
        parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
        xtr, ytr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        xte, yte = batch("test_batch")
    return xtr, ytr, xte, yte


def _read_local(path: str, name: str) -> tuple:
    if path.endswith(".npz"):
        return _read_npz(path)
    if name == "fashion_mnist":
        return _read_idx_dir(path)
    return _read_cifar(path, fine=(name == "cifar100"))


def _exists(path: str, name: str) -> bool:
    if path.endswith(".npz"):
        return os.path.isfile(path)
    if name == "fashion_mnist":
        return all(os.path.isfile(os.path.join(path, f)) for f in _FASHION_FILES)
    marker = "train" if name == "cifar100" else "data_batch_1"
    return os.path.isfile(os.path.join(path, marker))


def _download(name: str) -> tuple:
    from tfmpq._keras import keras  # only here: reading local files needs no TensorFlow

    module = {"fashion_mnist": keras.datasets.fashion_mnist, "mnist": keras.datasets.mnist,
              "cifar10": keras.datasets.cifar10, "cifar100": keras.datasets.cifar100}[name]
    (xtr, ytr), (xte, yte) = module.load_data()
    return xtr, ytr, xte, yte


def _how_to_get(name: str) -> str:
    keras_file = KERAS_NAMES[name]
    hints = [f"set $TFMPQ_DATA to a folder holding `{name}.npz` (x_train, y_train, x_test, y_test) "
             f"or Keras's `{keras_file}`",
             f"or copy Keras's `{keras_file}` into {_keras_cache()}"]
    if name == "fashion_mnist":
        hints.insert(0, "on Debian/Ubuntu run `apt-get install dataset-fashion-mnist`")
    hints.append('or use tfmpq.data.load("default"), the Fashion-MNIST subset shipped with tfmpq')
    return "; ".join(hints)


@functools.lru_cache(maxsize=1)
def _read_default() -> tuple:
    arrays = _read_npz(DEFAULT_PATH)
    for a in arrays:
        a.setflags(write=False)  # cached: callers get copies from _finish
    return arrays


def _read_named(name: str, download: bool) -> tuple[tuple, str]:
    looked = _candidates(name)
    for path in looked:
        if _exists(path, name):
            return _read_local(path, name), path
    tried = "no download was tried (download=False)"
    if download:
        try:
            return _download(name), "keras download"
        except Exception as e:  # any network/HTTP/checksum failure becomes one clear error
            tried = f"the Keras download failed ({type(e).__name__}: {e})"
    raise DatasetNotFoundError(
        f"Dataset `{name}` not found. Looked in: {', '.join(looked)}; {tried}. To get it: {_how_to_get(name)}.")


def _read_digits(seed: int) -> tuple:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError('Dataset `digits` needs scikit-learn: `pip install scikit-learn` '
                          '(or `pip install "tfmpq[data]"`).') from e
    d = load_digits()
    # Pixel values are counts 0..16 (on-pixels in 4x4 blocks of a 32x32 bitmap), so /16 gives [0, 1].
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    test = _stratified_split(y, 0.2, seed)
    train = np.setdiff1d(np.arange(len(y)), test)
    return x[train], y[train], x[test], y[test]


# ------------------------------------------------------------------ image folders

def _list_classes(root: str) -> list[str]:
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))


def _read_image_files(root: str, classes: list[str], color_mode: str, image_size) -> tuple:
    from PIL import Image

    files, labels = [], []
    for label, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, c))):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(root, c, f))
                labels.append(label)
    if not files:
        raise ValueError(f"Invalid image folder {root}: expected one sub-folder of images per class "
                         f"({', '.join(IMAGE_EXTENSIONS)}). Received: no image files in {classes}.")
    images = []
    for f in files:
        with Image.open(f) as im:
            if color_mode == "auto":
                color_mode = "grayscale" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "rgb"
            im = im.convert("L" if color_mode == "grayscale" else "RGB")
            if image_size is None:
                image_size = (im.height, im.width)
            if (im.height, im.width) != tuple(image_size):
                im = im.resize((image_size[1], image_size[0]), Image.BILINEAR)
            images.append(np.asarray(im, dtype=np.uint8))
    return np.stack(images), np.asarray(labels, dtype=np.int64), color_mode, image_size


def _read_image_dir(root: str, color_mode: str, image_size, test_fraction: float, seed: int) -> tuple:
    """Reads ``root/<class>/*.png`` or, when present, ``root/train/<class>`` and ``root/test/<class>``."""
    if color_mode not in ("auto", "grayscale", "rgb"):
        raise ValueError(f"Invalid value for `color_mode`: expected 'auto', 'grayscale' or 'rgb'. "
                         f"Received: color_mode={color_mode!r}.")
    sub = _list_classes(root)
    if "train" in sub and "test" in sub:
        classes = _list_classes(os.path.join(root, "train"))
        xtr, ytr, color_mode, image_size = _read_image_files(os.path.join(root, "train"), classes, color_mode,
                                                             image_size)
        xte, yte, _, _ = _read_image_files(os.path.join(root, "test"), classes, color_mode, image_size)
        return (xtr, ytr, xte, yte), classes
    if not sub:
        raise ValueError(f"Invalid image folder {root}: expected one sub-folder of images per class. "
                         f"Received: no sub-folders.")
    x, y, _, _ = _read_image_files(root, sub, color_mode, image_size)
    test = _stratified_split(y, test_fraction, seed)
    train = np.setdiff1d(np.arange(len(y)), test)
    return (x[train], y[train], x[test], y[test]), sub


# ------------------------------------------------------------------ subsets and splits

def _quotas(counts: np.ndarray, num: int) -> np.ndarray:
    """Splits ``num`` over classes as evenly as their counts allow (water-filling)."""
    quotas = np.zeros_like(counts)
    left = num
    open_ = np.flatnonzero(counts > 0)
    while left > 0 and len(open_):
        share, extra = divmod(left, len(open_))
        add = np.full(len(open_), share)
        add[:extra] += 1
        add = np.minimum(add, counts[open_] - quotas[open_])
        quotas[open_] += add
        left -= int(add.sum())
        open_ = open_[quotas[open_] < counts[open_]]
    return quotas


def balanced_subset(y: np.ndarray, num: int, seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced random subset of ``num`` samples.

    Each class gets ``num // num_classes`` samples (the remainder goes to the lowest class ids);
    a class with too few samples gives all it has and the others make up the difference.

    Args:
        y: Integer labels.
        num: Number of indices to return, at most ``len(y)``.
        seed: Seed of the draw. Defaults to 0.

    Returns:
        int64 indices into ``y`` in a seeded random order.

    Raises:
        ValueError: If ``num`` is not in ``1..len(y)``.
    """
    y = np.asarray(y)
    if not isinstance(num, (int, np.integer)) or not 0 < num <= len(y):
        raise ValueError(f"Invalid value for `num`: expected an integer in 1..{len(y)}. Received: num={num!r}.")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quotas = _quotas(counts, int(num))
    picked = [rng.choice(np.flatnonzero(y == c), size=q, replace=False) for c, q in zip(classes, quotas) if q]
    out = np.concatenate(picked).astype(np.int64)
    rng.shuffle(out)
    return out


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a seeded, class-stratified ``fraction`` of ``y`` (at least one sample)."""
    num = min(len(y) - 1, max(1, int(round(fraction * len(y)))))
    return np.sort(balanced_subset(y, num, seed) if fraction < 1 else np.arange(len(y)))


def split_validation(ds: Dataset, fraction: float = 0.1, seed: int = 0) -> tuple:
    """Splits a class-balanced validation set off a dataset's training split.

    Args:
        ds: The dataset.
        fraction: Share of the training samples that go to validation, in (0, 1). Defaults to 0.1.
        seed: Seed of the split. Defaults to 0.

    Returns:
        ``((x_train, y_train), (x_val, y_val))``; the two parts are disjoint and cover ``ds.x_train``.

    Raises:
        ValueError: If ``fraction`` is not in (0, 1).

    Example:

    >>> (x_tr, y_tr), (x_val, y_val) = split_validation(load("default"), 0.1, seed=0)
    """
    if not isinstance(fraction, (float, int)) or not 0 < fraction < 1:
        raise ValueError(f"Invalid value for `fraction`: expected a number in (0, 1). Received: fraction={fraction!r}.")
    val = _stratified_split(ds.y_train, float(fraction), seed)
    mask = np.zeros(len(ds.y_train), dtype=bool)
    mask[val] = True
    return (ds.x_train[~mask], ds.y_train[~mask]), (ds.x_train[mask], ds.y_train[mask])


#: The validation split of every dataset: a fixed, class-stratified share of the training split drawn
#: with this seed, whatever the run's ``seed`` or ``num_train``. The zoo's checkpoints were trained on
#: the rest, so validation images are never images a float model learned from.
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0


@dataclasses.dataclass
class Roles:
    """The three data roles of an honest search (issue 12).

    Attributes:
        train: ``(x, y)`` for QAT training and fine-tuning.
        val: ``(x, y)`` for every choice: search scores, best epochs, fine-tuning choices.
        test: ``(x, y)`` for reporting only; nothing is chosen with it.
        description: how each split was drawn (JSON-able), for run records.
    """

    train: tuple
    val: tuple
    test: tuple
    description: dict


def _check_subset_size(arg: str, num, available: int, where: str = "") -> None:
    """One ValueError naming ``arg`` unless ``num`` is None or an integer in 1..``available``."""
    if num is not None and (not isinstance(num, (int, np.integer)) or not 0 < num <= available):
        raise ValueError(f"Invalid value for `{arg}`: expected None or an integer in 1..{available}{where}. "
                         f"Received: {arg}={num!r}.")


def roles(ds: Dataset, val_fraction: float = VALIDATION_FRACTION, num_val: int | None = None,
          num_train: int | None = None, num_test: int | None = None, seed: int = 0) -> Roles:
    """Splits a dataset into train / validation / test roles, validation fixed.

    The validation split is ``split_validation(ds, val_fraction, seed=VALIDATION_SEED)`` of the
    *whole* training split: it does not move with ``seed`` or ``num_train``, so two runs with different
    seeds or training budgets are scored on the same images, and a zoo checkpoint trained on the rest
    (``tfmpq.zoo.checkpoint_info``) never sees them.

    Args:
        ds: a :class:`Dataset` (load it whole: ``load(name)`` without ``num_train``).
        val_fraction: share of the training split held out for validation, in (0, 1). Defaults to 0.1.
        num_val: use a class-balanced subset of that many validation samples (drawn with the fixed
            validation seed). None keeps all. Defaults to None.
        num_train: a class-balanced subset of the remaining training samples, drawn with ``seed``.
            None keeps all. Defaults to None.
        num_test: a class-balanced subset of the test split (fixed draw). None keeps all. Defaults to None.
        seed: seed of the training subset only. Defaults to 0.

    Returns:
        :class:`Roles`.

    Raises:
        ValueError: a fraction outside (0, 1) or a subset size outside 1..available.

    Example:

    >>> r = roles(load("default"), num_train=4000, seed=3)
    >>> len(r.val[1]), len(r.test[1])   # the same 1,000 validation images for every seed
    (1000, 2000)
    """
    (x_tr, y_tr), (x_val, y_val) = split_validation(ds, val_fraction, seed=VALIDATION_SEED)
    for arg, num, y in (("num_train", num_train, y_tr), ("num_val", num_val, y_val), ("num_test", num_test, ds.y_test)):
        _check_subset_size(arg, num, len(y))
    if num_train is not None:
        idx = balanced_subset(y_tr, num_train, seed)
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    if num_val is not None:
        idx = np.sort(balanced_subset(y_val, num_val, VALIDATION_SEED))
        x_val, y_val = x_val[idx], y_val[idx]
    x_te, y_te = ds.x_test, ds.y_test
    if num_test is not None:
        idx = np.sort(balanced_subset(y_te, num_test, VALIDATION_SEED + 1))
        x_te, y_te = x_te[idx], y_te[idx]
    description = {"data": ds.name, "validation": {"fraction": float(val_fraction), "seed": VALIDATION_SEED},
                   "num_train": int(len(y_tr)), "num_val": int(len(y_val)), "num_test": int(len(y_te)),
                   "train_subset_seed": int(seed) if num_train is not None else None}
    return Roles((x_tr, y_tr), (x_val, y_val), (x_te, y_te), description)


# ------------------------------------------------------------------ the public entry point

NAMES = ("default", "fashion_mnist", "mnist", "cifar10", "cifar100", "digits")
_CLASS_NAMES = {"default": FASHION_MNIST_CLASSES, "fashion_mnist": FASHION_MNIST_CLASSES,
                "mnist": tuple(str(i) for i in range(10)), "digits": tuple(str(i) for i in range(10)),
                "cifar10": CIFAR10_CLASSES}


def pad_to(ds: Dataset, size: int) -> Dataset:
    """The dataset with every image zero-padded symmetrically to ``size`` x ``size``.

    MobileNet v1 needs inputs of at least 32x32; ``zoo:mobilenet_v1_fmnist`` was trained on the 28x28
    Fashion-MNIST images padded this way (its record's ``padded_to``; see :func:`tfmpq.zoo.checkpoint_dataset`).

    Args:
        ds: a :class:`Dataset` of images ``(N, H, W, C)``.
        size: the padded height and width, >= H and >= W.

    Returns:
        A new :class:`Dataset` (the arrays of ``ds`` are not changed).

    Raises:
        ValueError: ``ds`` does not hold images, or ``size`` is smaller than them.
    """
    if ds.x_train.ndim != 4:
        raise ValueError(f"Invalid value for `ds`: expected images (N, H, W, C) to pad. Received: inputs of shape "
                         f"{ds.input_shape} in {ds.name!r}.")
    h, w = ds.x_train.shape[1:3]
    if not isinstance(size, int) or size < max(h, w):
        raise ValueError(f"Invalid value for `size`: expected an integer >= the images' {h}x{w}. Received: size={size!r}.")

    def pad(x: np.ndarray) -> np.ndarray:
        dh, dw = size - x.shape[1], size - x.shape[2]
        return np.pad(x, ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)))

    x_train, x_test = pad(ds.x_train), pad(ds.x_test)
    return dataclasses.replace(ds, x_train=x_train, x_test=x_test, input_shape=tuple(x_train.shape[1:]))


def names() -> list[str]:
    """Names :func:`load` accepts besides paths.

    Returns:
        The dataset names, ``"default"`` first.
    """
    return list(NAMES)


def _looks_like_path(s: str) -> bool:
    return s.endswith(".npz") or os.sep in s or "/" in s or s.startswith(".") or os.path.exists(s)


def _to_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:  # (N, H, W) grayscale -> (N, H, W, 1)
        x = x[..., None]
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32)


def _finish(arrays: tuple, name: str, source: str, class_names, num_train, num_test, seed) -> Dataset:
    xtr, ytr, xte, yte = arrays
    ytr, yte = np.asarray(ytr).reshape(-1).astype(np.int64), np.asarray(yte).reshape(-1).astype(np.int64)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"Invalid dataset {name}: expected as many labels as inputs. Received: "
                         f"x_train {len(xtr)} / y_train {len(ytr)}, x_test {len(xte)} / y_test {len(yte)}.")
    for arg, num, y in (("num_train", num_train, ytr), ("num_test", num_test, yte)):
        _check_subset_size(arg, num, len(y), f" (the size of {name}'s split)")
    if num_train is not None:
        idx = balanced_subset(ytr, num_train, seed)
        xtr, ytr = xtr[idx], ytr[idx]
    if num_test is not None:
        idx = balanced_subset(yte, num_test, seed + 1)  # seed + 1: train and test draws independent
        xte, yte = xte[idx], yte[idx]
    xtr, xte = _to_float(xtr), _to_float(xte)
    num_classes = int(max(ytr.max(initial=0), yte.max(initial=0))) + 1
    return Dataset(xtr, ytr, xte, yte, name=name, num_classes=num_classes, input_shape=tuple(xtr.shape[1:]),
                   class_names=tuple(class_names) if class_names is not None else None, source=source)


def load(name_or_path: str = "default", num_train: int | None = None, num_test: int | None = None,
         seed: int = 0, download: bool = True, color_mode: str = "auto", image_size: tuple | None = None,
         test_fraction: float = 0.2) -> Dataset:
    """Loads a classification dataset as float32 images in [0, 1] and int64 labels.

    Args:
        name_or_path: One of :func:`names` (``"default"`` is the 10,000 + 2,000 image Fashion-MNIST
            subset shipped with tfmpq; ``"digits"`` is scikit-learn's 8x8 digits), a ``.npz`` file
            with ``x_train``, ``y_train``, ``x_test``, ``y_test``, or a folder of images with one
            sub-folder per class (optionally under ``train/`` and ``test/``). Integer pixel arrays are
            divided by 255; float arrays are kept. Defaults to ``"default"``.
        num_train: Size of a class-balanced, seeded subset of the training split; None keeps all.
            Defaults to None.
        num_test: Same for the test split. Defaults to None.
        seed: Seed of the subsets and of the test split of sources that have none (``digits``,
            image folders without ``train/``/``test/``). Defaults to 0.
        download: Whether to ask Keras to download a named dataset no local copy of which exists.
            Defaults to True.
        color_mode: Image folders only: ``"auto"`` (from the first image), ``"grayscale"`` or
            ``"rgb"``. Defaults to ``"auto"``.
        image_size: Image folders only: ``(height, width)`` every image is resized to; None uses the
            first image's size. Defaults to None.
        test_fraction: Image folders without ``train/``/``test/``: the stratified share held out for
            test. Defaults to 0.2.

    Returns:
        A :class:`Dataset`.

    Raises:
        ValueError: For an unknown name, a malformed file or folder, or an invalid option.
        FileNotFoundError: For a path that does not exist.
        DatasetNotFoundError: (a FileNotFoundError) When a named dataset has no local copy and the
            download fails; the message lists every place looked and how to get the data.

    Example:

    >>> ds = load("default", num_train=2000, num_test=500, seed=0)
    >>> ds.input_shape
    (28, 28, 1)
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(f"Invalid value for `name_or_path`: expected a dataset name or a path. "
                         f"Received: name_or_path={name_or_path!r}.")
    spec = os.fspath(name_or_path)
    key = spec.strip().lower().replace("-", "_")
    key = {"fmnist": "fashion_mnist", "cifar_10": "cifar10", "cifar_100": "cifar100"}.get(key, key)
    if key in NAMES:  # names win over same-named folders; write ./mnist for a folder called mnist
        if key == "default":
            arrays, source = _read_default(), DEFAULT_PATH
        elif key == "digits":
            arrays, source = _read_digits(seed), "scikit-learn"
        else:
            arrays, source = _read_named(key, download)
        return _finish(arrays, key, source, _CLASS_NAMES.get(key), num_train, num_test, seed)
    if not _looks_like_path(spec):
        raise ValueError(f"Invalid value for `name_or_path`: unknown dataset. Received: name_or_path={spec!r}. "
                         f"Expected one of {names()}, a .npz file or a folder of class sub-folders.")
    if not os.path.exists(spec):
        raise FileNotFoundError(f"Dataset path not found: {spec!r}. Expected a .npz file with x_train, y_train, "
                                f"x_test, y_test or a folder of class sub-folders.")
    if os.path.isdir(spec):
        arrays, classes = _read_image_dir(spec, color_mode, image_size, test_fraction, seed)
        return _finish(arrays, spec, spec, classes, num_train, num_test, seed)
    if not spec.endswith(".npz"):
        raise ValueError(f"Invalid value for `name_or_path`: expected a .npz file or a folder. Received: {spec!r}.")
    return _finish(_read_npz(spec), spec, spec, None, num_train, num_test, seed)
