"""The model zoo: builders by name, the shipped checkpoint, and ``zoo:NAME`` / path resolution.

The builders live in this package's modules (``cnn``, ``dscnn``, ``mobilenet``, ``resnet``, ``vgg``),
the trained checkpoints and their JSON records in ``checkpoints/``; the repository's ``models/``
folder holds the script that trained them (``python -m models.train_demo``) and their description.
``resolve_model`` is what the CLI and the search call with a user's ``--model``.

Example:

>>> from tfmpq import zoo
>>> model = zoo.get("resnet20", num_classes=100)
>>> trained = zoo.resolve_model("zoo:small_cnn_fmnist")   # the float demo checkpoint
>>> zoo.checkpoint_info("dscnn_fmnist")["validation"]       # how it was trained and scored
{'fraction': 0.1, 'seed': 0}
"""
from __future__ import annotations

import json
import os

from tfmpq._keras import keras
from tfmpq.convert import as_tf_keras, is_keras3_model, keras3_file_version, load_keras3_file
from tfmpq.errors import ModelLoadError
from tfmpq.zoo.cnn import build_mlp, build_small_cnn
from tfmpq.zoo.dscnn import build_dscnn
from tfmpq.zoo.mobilenet import build_mobilenet_v1, build_mobilenet_v2
from tfmpq.zoo.resnet import build_resnet, build_resnet20, build_resnet32, build_resnet56
from tfmpq.zoo.vgg import build_vgg_small

__all__ = ["ModelLoadError", "get", "names", "checkpoints", "checkpoint_path", "checkpoint_info", "checkpoint_dataset",
           "resolve_model",
           "build_small_cnn", "build_mlp", "build_resnet", "build_resnet20", "build_resnet32", "build_resnet56",
           "build_mobilenet_v1", "build_mobilenet_v2", "build_vgg_small", "build_dscnn"]

_BUILDERS = {
    "small_cnn": build_small_cnn,
    "mlp": build_mlp,
    "resnet20": build_resnet20,
    "resnet32": build_resnet32,
    "resnet56": build_resnet56,
    "mobilenet_v1": build_mobilenet_v1,
    "mobilenet_v2": build_mobilenet_v2,
    "vgg_small": build_vgg_small,
    "dscnn": build_dscnn,
}

# Trained float checkpoints shipped in checkpoints/ (see models/README.md for how each was made). Each
# NAME.keras has a record NAME.json beside it (see `checkpoint_info`).
CHECKPOINT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")
_CHECKPOINTS = {"small_cnn_fmnist": "small_cnn_fmnist.keras", "dscnn_fmnist": "dscnn_fmnist.keras",
                "mobilenet_v1_fmnist": "mobilenet_v1_fmnist.keras"}

ZOO_PREFIX = "zoo:"


def names() -> list[str]:
    """Names of the model builders :func:`get` accepts.

    Returns:
        The builder names, e.g. ``["small_cnn", "mlp", "resnet20", ...]``.
    """
    return list(_BUILDERS)


def checkpoints() -> list[str]:
    """Names of the trained checkpoints shipped with tfmpq (usable as ``zoo:NAME``).

    Returns:
        The checkpoint names, e.g. ``["small_cnn_fmnist", "dscnn_fmnist", "mobilenet_v1_fmnist"]``.
    """
    return list(_CHECKPOINTS)


def checkpoint_path(name: str) -> str:
    """Path of a shipped checkpoint.

    Args:
        name: One of :func:`checkpoints`.

    Returns:
        The absolute path of the ``.keras`` file.

    Raises:
        ValueError: If ``name`` is not a shipped checkpoint.
    """
    if name not in _CHECKPOINTS:
        raise ValueError(f"Invalid value for `name`: unknown checkpoint. Received: name={name!r}. "
                         f"Expected one of {checkpoints()}.")
    return os.path.join(CHECKPOINT_DIR, _CHECKPOINTS[name])


def checkpoint_info(name: str) -> dict:
    """How a shipped checkpoint was trained and how it scores: its JSON record in tfmpq/zoo/checkpoints/.

    The record (written by ``python -m models.train_demo``) holds the model and builder arguments,
    the dataset, the validation rule (``{"fraction": 0.1, "seed": 0}``: the split of
    ``tfmpq.data.split_validation``), the numbers of training, validation and test images, epochs,
    optimizer and schedule, BatchNormalization momentum, seed, float validation and test accuracy,
    parameter count, training time, the command that made it and tfmpq's git commit.

    Args:
        name: One of :func:`checkpoints`.

    Returns:
        The record as a dict (a new one on every call).

    Raises:
        ValueError: If ``name`` is not a shipped checkpoint.
        ModelLoadError: If its record is missing or is not a JSON object.

    Example:

    >>> info = checkpoint_info("small_cnn_fmnist")
    >>> info["dataset"], info["num_train"], info["epochs"]
    ('default', 9000, 8)
    """
    path = os.path.splitext(checkpoint_path(name))[0] + ".json"
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"Cannot read the record of checkpoint `{name}` at {path}: {type(e).__name__}: {e}. "
                             f"Expected the JSON file `python -m models.train_demo` writes beside the "
                             f".keras file.") from e
    if not isinstance(info, dict):
        raise ModelLoadError(f"Cannot read the record of checkpoint `{name}` at {path}: expected a JSON object. "
                             f"Received: {type(info).__name__}.")
    return info


def checkpoint_dataset(name: str, **kwargs):
    """The dataset a shipped checkpoint was trained on, prepared as it was (padded to its record's
    ``padded_to``: ``mobilenet_v1_fmnist`` sees the 28x28 Fashion-MNIST images padded to 32x32).

    Args:
        name: One of :func:`checkpoints`.
        **kwargs: passed to :func:`tfmpq.data.load` (``num_train``, ``num_test``, ``seed``, ...).

    Returns:
        A :class:`tfmpq.data.Dataset` whose inputs fit the checkpoint.

    Raises:
        ValueError: ``name`` is not a shipped checkpoint. tfmpq.data.DatasetNotFoundError: the data has
        no local copy and cannot be downloaded.

    Example:

    >>> ds = checkpoint_dataset("mobilenet_v1_fmnist", num_test=2000)
    >>> ds.input_shape
    (32, 32, 1)
    """
    from tfmpq import data

    info = checkpoint_info(name)
    ds = data.load(info["dataset"], **kwargs)
    return data.pad_to(ds, int(info["padded_to"])) if info.get("padded_to") else ds


def get(name: str, **kwargs) -> keras.Model:
    """Builds an untrained zoo model.

    Args:
        name: One of :func:`names`.
        **kwargs: Passed to the builder: ``input_shape``, ``num_classes`` and model options
            (``alpha``, ``width``, ``classifier_activation``, ...).

    Returns:
        A new tf_keras functional model.

    Raises:
        ValueError: If ``name`` is unknown or the builder rejects an argument.

    Example:

    >>> get("small_cnn", input_shape=(28, 28, 1), num_classes=10).count_params()
    29402
    """
    if name not in _BUILDERS:
        raise ValueError(f"Invalid value for `name`: unknown model. Received: name={name!r}. "
                         f"Expected one of {names()}.")
    return _BUILDERS[name](**kwargs)


def _load(path: str, custom_objects: dict | None) -> keras.Model:
    if keras3_file_version(path):  # saved by Keras 3: load it with Keras 3, then convert
        return load_keras3_file(path, custom_objects)
    try:
        model = keras.models.load_model(path, compile=False, custom_objects=custom_objects)
    except Exception as e:  # corrupt file, unknown custom layer, wrong format: one clear error
        raise ModelLoadError(f"Cannot load a tf_keras model from {path}: {type(e).__name__}: {e}. Expected a "
                             f"`.keras` or `.h5` file or a SavedModel folder saved by tf_keras or Keras 3; models "
                             f"with custom layers need `custom_objects`.") from e
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"Cannot load a tf_keras model from {path}: it holds a "
                             f"{type(model).__name__}, not a keras.Model.")
    return model


def resolve_model(spec, custom_objects: dict | None = None, **kwargs) -> keras.Model:
    """Turns a user's model argument into a tf_keras model.

    Args:
        spec: A tf_keras ``keras.Model`` (returned as is), a Keras 3 model (converted with
            :func:`tfmpq.convert.as_tf_keras`), ``"zoo:NAME"`` with NAME one of :func:`names` (built
            untrained, with ``**kwargs``) or :func:`checkpoints` (loaded trained), or the path of a
            ``.keras`` / ``.h5`` file (saved by tf_keras or by Keras 3, which is then loaded with Keras 3
            and converted) or a SavedModel folder.
        custom_objects: Passed to ``keras.models.load_model`` for paths. Defaults to None.
        **kwargs: Builder arguments for ``zoo:`` builders (``input_shape``, ``num_classes``, ...).

    Returns:
        The model; files are loaded with ``compile=False``.

    Raises:
        ValueError: For an unknown ``zoo:`` name or a spec that is neither a model nor a string.
        FileNotFoundError: If the path does not exist.
        UnsupportedModelError: For a Keras 3 model (or file) with a layer tfmpq cannot convert.
        ModelLoadError: For a file tf_keras (or Keras 3, for its files) cannot read.

    Example:

    >>> resolve_model("zoo:resnet20", num_classes=100).output_shape
    (None, 100)
    """
    if isinstance(spec, keras.Model):
        return spec
    if is_keras3_model(spec):
        return as_tf_keras(spec)
    if not isinstance(spec, (str, os.PathLike)):
        raise ValueError(f"Invalid value for `spec`: expected a keras.Model, 'zoo:NAME' or a model path. "
                         f"Received: spec={spec!r}.")
    spec = os.fspath(spec)
    if spec.startswith(ZOO_PREFIX):
        name = spec[len(ZOO_PREFIX):]
        if name in _CHECKPOINTS:
            if kwargs:
                raise ValueError(f"Invalid arguments for `{spec}`: a trained checkpoint takes no builder arguments. "
                                 f"Received: {sorted(kwargs)}.")
            return _load(checkpoint_path(name), custom_objects)
        if name not in _BUILDERS:
            raise ValueError(f"Invalid value for `spec`: unknown zoo model. Received: spec={spec!r}. "
                             f"Expected zoo:NAME with NAME one of {names() + checkpoints()}.")
        return get(name, **kwargs)
    if not os.path.exists(spec):
        raise FileNotFoundError(f"Model file not found: {spec!r}. Expected a .keras/.h5 file, a SavedModel folder "
                                f"or zoo:NAME (NAME one of {names() + checkpoints()}).")
    return _load(spec, custom_objects)
