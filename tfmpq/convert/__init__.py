"""The user's model turned into the flat tf_keras (Keras 2) model tfmpq works on.

Two steps, both at the boundary of every public entry point (:func:`as_tf_keras`): a Keras 3 model is
converted to tf_keras (:mod:`tfmpq.convert.keras3`), and nested models are inlined and SeparableConv2D
split into its two convolutions (:mod:`tfmpq.convert.flatten`), so that every weighted layer is one
layer of one flat graph.

tfmot, and so tfmpq, needs tf_keras; Keras 3 is the Keras of TensorFlow >= 2.16 and of Colab. Every
public entry point that takes a float model calls :func:`as_tf_keras` at its boundary, so a Keras 3
model object (or a Keras 3 ``.keras`` / ``.h5`` file, through ``tfmpq.zoo.resolve_model``) is accepted
wherever a tf_keras model is.

This module only *recognises* Keras 3 objects, nested models and files (by their classes' module names,
their layers and the files' metadata), so it never imports Keras 3 or TensorFlow itself: the converter
and the flattener are imported when there is something to convert or to flatten.

Example:
>>> import keras                                   # Keras 3
>>> model = keras.applications.MobileNetV2(input_shape=(64, 64, 3), weights=None, classes=10)
>>> tf_keras_model = tfmpq.convert.as_tf_keras(model)      # same graph, names and weights
>>> tfmpq.quantizable_groups(model) == tfmpq.quantizable_groups(tf_keras_model)
True
"""
from __future__ import annotations

import json
import os
import zipfile

__all__ = ["as_tf_keras", "flatten_model", "is_keras3_model", "keras3_file_version", "load_keras3_file",
           "tf_keras_loss"]


def is_keras3_model(obj) -> bool:
    """Whether `obj` is a Keras 3 model (``keras.Model``, ``keras.Sequential`` or a subclass).

    Decided by the module names of its classes (Keras 3 keeps its models in ``keras.src.models``), so
    asking never imports Keras 3.

    Args:
        obj: any object.

    Returns:
        True for Keras 3 models; False for tf_keras models and anything else.
    """
    return any(c.__module__.startswith("keras.src.models.") for c in type(obj).__mro__)


def as_tf_keras(model):
    """`model` as the flat tf_keras model tfmpq works on: converted from Keras 3, nested models inlined.

    A Keras 3 Sequential or functional model becomes the tf_keras model with the same layers (names
    and configurations), connections and weights, so its outputs match to float rounding. A model
    holding nested models (a Keras Applications backbone, a Sequential block), Keras 3 or tf_keras,
    becomes the equivalent flat functional model whose layers are named ``<nested model>/<layer>``,
    and a SeparableConv2D becomes its depthwise and pointwise convolutions (`flatten_model`). The same
    model object always gives the same tf_keras model object, its weights and ``trainable`` flags
    copied again from `model` on every call (train the model, call again, and the tf_keras model has
    the new weights).

    Args:
        model: a Keras 3 or tf_keras model, or anything else (returned unchanged).

    Returns:
        A flat tf_keras model, or `model` itself when it is a tf_keras model with nothing to flatten
        or not a model.

    Raises:
        UnsupportedModelError: a subclassed or unbuilt Keras 3 model, a layer tfmpq cannot convert
            (named, with the list of supported layers), or an option tf_keras cannot express.
    """
    if is_keras3_model(model):
        from tfmpq.convert import keras3  # imports Keras 3, which the caller has already loaded

        model = keras3.to_tf_keras(model)
    if _may_need_flattening(model):
        from tfmpq.convert.flatten import flatten_model as flatten  # tf_keras is loaded: `model` is one

        return flatten(model)
    return model


def _may_need_flattening(model) -> bool:
    """Whether `model` has a layer that is a model itself, or a SeparableConv2D (asked without importing
    Keras: a model whose layers are Keras layers means Keras is loaded already)."""
    layers = getattr(model, "layers", None)
    return isinstance(layers, list) and any(
        hasattr(layer, "layers") or type(layer).__name__ == "SeparableConv2D" for layer in layers)


def flatten_model(model):
    """The flat functional tf_keras model equivalent to a tf_keras `model`: nested models inlined,
    SeparableConv2D split (see :mod:`tfmpq.convert.flatten`); `model` itself if there is nothing to do."""
    if not _may_need_flattening(model):
        return model
    from tfmpq.convert.flatten import flatten_model as flatten

    return flatten(model)


def tf_keras_loss(loss):
    """A compiled loss as tf_keras knows it: Keras 3 built-in losses translated, others unchanged.

    Args:
        loss: a loss name, function or object (e.g. a model's ``.loss``), or None.

    Returns:
        The loss name (unchanged), the tf_keras loss of the same class and options for a Keras 3
        loss object or function, None for None or a Keras 3 loss tf_keras lacks, and anything else
        unchanged.
    """
    if not loss:
        return None
    if isinstance(loss, str):
        return loss
    module = getattr(loss, "__module__", "") if callable(loss) and not hasattr(loss, "get_config") \
        else type(loss).__module__
    if not module.startswith("keras.src."):
        return loss
    from tfmpq.convert import keras3

    return keras3.loss(loss)


def keras3_file_version(path: str | os.PathLike) -> str | None:
    """The Keras 3 version that saved a model file, or None when Keras 3 did not save it.

    Reads the ``keras_version`` a ``.keras`` zip records in ``metadata.json``, or the ``keras_version``
    attribute of an ``.h5`` file; tf_keras writes "2.x" in both.

    Args:
        path: a ``.keras`` or ``.h5`` file (other paths give None).

    Returns:
        The version string, e.g. "3.15.1", or None.
    """
    path = os.fspath(path)
    version = None
    if path.endswith(".keras") and os.path.isfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                if "metadata.json" in z.namelist():
                    version = json.loads(z.read("metadata.json")).get("keras_version")
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
    elif path.endswith((".h5", ".hdf5")) and os.path.isfile(path):
        try:
            import h5py  # a tf_keras dependency; it does not load TensorFlow

            with h5py.File(path, "r") as f:
                version = f.attrs.get("keras_version")
        except (OSError, ValueError, ImportError):
            return None
        if isinstance(version, bytes):
            version = version.decode()
    if isinstance(version, str) and version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3:
        return version
    return None


def load_keras3_file(path: str | os.PathLike, custom_objects: dict | None = None):
    """Loads a model file saved by Keras 3 with Keras 3 and converts it to tf_keras.

    Args:
        path: a ``.keras`` (or ``.h5``) file saved by Keras 3.
        custom_objects: passed to ``keras.saving.load_model``. Defaults to None.

    Returns:
        The tf_keras model (see :func:`as_tf_keras`).

    Raises:
        ModelLoadError: Keras 3 is not installed, or cannot read the file.
        UnsupportedModelError: the model holds a layer tfmpq cannot convert.
    """
    from tfmpq.convert import keras3

    return keras3.load(os.fspath(path), custom_objects)
