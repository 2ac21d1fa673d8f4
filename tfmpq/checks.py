"""Input checks that run before any work: data that cannot be trained or scored on fails at once.

A NaN image trained on is a NaN loss (or, on some CPUs, a ReLU that turns NaN into 0 and a score that
looks fine); a label outside the model's classes is an out-of-range gather; a batch of the wrong shape
fails deep inside a traced function. Every entry point that takes data (the :class:`Evaluator`, every
search, ``tfmpq.calibrate``, ``tfmpq.export.export_tflite``, ``Result.compare_with_uniform`` and the
CLI through them) calls :func:`check_data` first, so the user gets one ``ValueError`` that names the
argument and what is wrong, before a model is built.

NumPy only: the model is read through its Keras attributes (``input_shape``, ``output_shape``,
``layers``), never called.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["check_data", "check_inputs", "model_input_shape", "model_num_classes"]

#: Layers that scale raw pixels inside the model: with one of them, 0..255 inputs are expected.
_SCALING_LAYERS = ("Rescaling", "Normalization")


def model_input_shape(model) -> tuple | None:
    """The shape of one input sample of a single-input model (``None`` for unknown dims), or None
    when the model has several inputs."""
    shape = getattr(model, "input_shape", None)
    if shape is None or (isinstance(shape, list) and len(shape) != 1):
        return None
    if isinstance(shape, list):
        shape = shape[0]
    return tuple(None if d is None else int(d) for d in shape[1:])


def model_num_classes(model) -> int | None:
    """The size of a single-output model's last axis (its classes; 1 for a binary output), or None."""
    shape = getattr(model, "output_shape", None)
    if shape is None or (isinstance(shape, list) and len(shape) != 1):
        return None
    if isinstance(shape, list):
        shape = shape[0]
    return None if shape[-1] is None else int(shape[-1])


def _is_dataset(obj) -> bool:
    return type(obj).__module__.startswith("tensorflow") and hasattr(obj, "element_spec")


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_inputs(model, x, *, name: str, error: type = ValueError, warn_scale: bool = True) -> np.ndarray | Any:
    """Checks a batch of model inputs: not empty, the model's sample shape, finite values.

    Args:
        model: the Keras model the inputs are for (its ``input_shape``).
        x: an array of samples ``(N, ...)``, or a ``tf.data.Dataset`` (only its element shape is
            checked: its values are not read).
        name: the argument's name, used in the message (e.g. ``"train"``, ``"representative_data"``).
        error: the exception class to raise. Defaults to ValueError.
        warn_scale: warn about 0..255 images given to a model with no Rescaling layer. Defaults to True.

    Returns:
        ``x`` as a NumPy array (a dataset is returned as it is).

    Raises:
        ValueError (or ``error``): an empty set, a sample shape other than the model's, a non-numeric
            array, or NaN/Inf values; the message names ``name``.
    """
    expected = model_input_shape(model)
    if _is_dataset(x):
        spec = x.element_spec
        spec = spec[0] if isinstance(spec, tuple) else spec
        got = tuple(getattr(spec, "shape", ()))[1:]
        if expected is not None and not _shape_matches(expected, got):
            raise error(
                f"Invalid value for `{name}`: expected batches of samples of shape {_shape_text(expected)} (the "
                f"model's input). Received: a dataset of batches of shape {_shape_text((None,) + tuple(got))}."
            )
        return x
    try:
        arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise error(f"Invalid value for `{name}`: expected an array of samples. Received: {type(x).__name__} ({e}).") \
            from None
    if arr.ndim == 0:
        raise error(f"Invalid value for `{name}`: expected an array of samples (N, ...). Received: a scalar.")
    if len(arr) == 0:
        raise error(f"Invalid value for `{name}`: expected at least one sample. Received: an empty set {arr.shape}.")
    if expected is not None and not _shape_matches(expected, arr.shape[1:]):
        raise error(
            f"Invalid value for `{name}`: expected samples of shape {_shape_text(expected)} (the model's input "
            f"`{_input_name(model)}`). Received: samples of shape {_shape_text(arr.shape[1:])} (array {arr.shape})."
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise error(f"Invalid value for `{name}`: expected numeric samples. Received: dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.inexact):
        finite = np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise error(
                f"Invalid value for `{name}`: expected finite values. Received: NaN or Inf in {len(bad)} of "
                f"{len(arr)} samples (the first at index {int(bad[0])})."
            )
    if warn_scale and arr.size:
        _warn_if_unscaled(model, arr, name)
    return arr


def check_data(model, data, *, name: str, error: type = ValueError, warn_scale: bool = True):
    """Checks ``(x, y)`` for training or scoring ``model``: the inputs (:func:`check_inputs`), as many
    labels as samples, and labels the model's output can match.

    Labels may be sparse class ids (``(N,)`` or ``(N, 1)``) in ``0..classes-1``, one-hot / probability
    rows of the output's width, or 0/1 for a single-unit (binary) output.

    Args:
        model: the Keras model.
        data: ``(x, y)`` arrays, or a batched ``tf.data.Dataset`` of ``(x, y)`` (shapes checked only).
        name: the argument's name, used in the message (``"train"``, ``"val"``, ``"test"``).
        error: the exception class to raise. Defaults to ValueError.
        warn_scale: see :func:`check_inputs`. Defaults to True.

    Returns:
        ``(x, y)`` as NumPy arrays (a dataset is returned as it is).

    Raises:
        ValueError (or ``error``): anything :func:`check_inputs` refuses, ``data`` not a pair, x and y of
            different lengths, labels that are not finite, not integers, or outside the model's classes.
    """
    if _is_dataset(data):
        spec = data.element_spec
        if not (isinstance(spec, tuple) and len(spec) >= 2):
            raise error(f"Invalid value for `{name}`: expected a dataset of (x, y) batches. Received: {spec}.")
        check_inputs(model, data, name=name, error=error)
        return data
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise error(
            f"Invalid value for `{name}`: expected a pair (x, y) of arrays or a batched tf.data.Dataset. "
            f"Received: {type(data).__name__}" + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
            + "."
        )
    x = check_inputs(model, data[0], name=name, error=error, warn_scale=warn_scale)
    y = data[1] if isinstance(data[1], np.ndarray) else np.asarray(data[1])
    if y.ndim == 0 or len(y) != len(x):
        raise error(
            f"Invalid value for `{name}`: expected as many labels as samples. Received: {len(x)} samples and "
            f"{'a scalar' if y.ndim == 0 else len(y)} labels."
        )
    _check_labels(model, y, name, error)
    return x, y


def _check_labels(model, y: np.ndarray, name: str, error: type) -> None:
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise error(f"Invalid value for `{name}`: expected numeric labels. Received: labels of dtype {y.dtype}.")
    if np.issubdtype(y.dtype, np.inexact) and not np.isfinite(y).all():
        bad = np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).all(axis=1))
        raise error(f"Invalid value for `{name}`: expected finite labels. Received: NaN or Inf in {len(bad)} "
                    f"labels (the first at index {int(bad[0])}).")
    classes = model_num_classes(model)
    if classes is None:
        return
    sparse = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and classes != 1)
    if not sparse:
        if y.shape[-1] != classes:
            raise error(
                f"Invalid value for `{name}`: expected sparse class ids (N,) or one-hot rows of the model's "
                f"{classes} outputs. Received: labels of shape {y.shape}."
            )
        return
    flat = y.reshape(-1)
    if np.issubdtype(flat.dtype, np.inexact) and not np.all(flat == np.round(flat)):
        raise error(f"Invalid value for `{name}`: expected integer class ids. Received: non-integer labels "
                    f"such as {float(flat[flat != np.round(flat)][0])!r}.")
    top = 2 if classes == 1 else classes
    bad = (flat < 0) | (flat >= top)
    if bad.any():
        values = sorted(set(flat[bad].tolist()))[:5]
        raise error(
            f"Invalid value for `{name}`: expected class ids in 0..{top - 1} (the model has {classes} output"
            f"{'s' if classes != 1 else ''}). Received: {int(bad.sum())} labels outside, such as {values}."
        )


def _shape_matches(expected: tuple, got: tuple) -> bool:
    return len(expected) == len(got) and all(e is None or e == int(g) for e, g in zip(expected, got) if g is not None)


def _input_name(model) -> str:
    try:
        return model.inputs[0].name.split(":")[0]
    except Exception:
        return "input"


def _warn_if_unscaled(model, x: np.ndarray, name: str) -> None:
    """Warns when 0..255 pixels meet a model with no Rescaling/Normalization layer (most models are
    trained on inputs scaled to [0, 1]; the other way round is not checked: it cannot be told apart
    from a model trained on small values)."""
    if any(type(layer).__name__ in _SCALING_LAYERS for layer in getattr(model, "layers", ())):
        return
    top = float(x.max())
    if top > 1.5 and (np.issubdtype(x.dtype, np.integer) or top >= 32.0):
        warnings.warn(
            f"`{name}` holds values up to {top:g} (dtype {x.dtype}): 0..255 pixels? The model has no Rescaling "
            "layer; if it was trained on inputs in [0, 1], divide the images by 255 (tfmpq.data.load does).",
            UserWarning, stacklevel=4,
        )
