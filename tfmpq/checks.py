"""Input checks that run before any work: data that cannot be trained or scored on fails at once.

A NaN image trained on is a NaN loss (or, on some CPUs, a ReLU that turns NaN into 0 and a score that
looks fine); a label outside the model's classes is an out-of-range gather; a batch of the wrong shape
fails deep inside a traced function. Every entry point that takes data (the :class:`Evaluator`, every
search, ``tfmpq.calibrate``, ``tfmpq.export.export_tflite``, ``Result.compare_with_uniform`` and the
CLI through them) calls :func:`check_data` first, so the user gets one ``ValueError`` that names the
argument and what is wrong, before a model is built.

A model with several inputs takes a list or tuple of arrays (one per input, in the model's input order)
or a dict of arrays by input name, wherever one array of samples is taken; :func:`check_inputs`
returns them as a tuple in the model's input order (what Keras and ``tf.data`` take as one structure),
and :func:`num_samples` / :func:`take_samples` count and slice any of these forms. A model with
several outputs takes a list, tuple or dict (by output name) of label arrays in :func:`check_data`.

NumPy only: the model is read through its Keras attributes (``input_shape``, ``input_names``,
``output_shape``, ``layers``), never called.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["check_data", "check_inputs", "model_input_shape", "model_input_specs", "model_num_classes",
           "num_samples", "take_samples"]

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


def model_input_specs(model) -> list[tuple[str, tuple | None]]:
    """``(input name, sample shape)`` of every input of `model`, in its input order."""
    shape = getattr(model, "input_shape", None)
    shapes = shape if isinstance(shape, list) else [shape]
    names = list(getattr(model, "input_names", None) or [])
    if len(names) != len(shapes):
        names = [_input_name(model)] if len(shapes) == 1 else [f"input_{i}" for i in range(len(shapes))]
    return [(n, None if s is None else tuple(None if d is None else int(d) for d in s[1:]))
            for n, s in zip(names, shapes)]


def num_samples(x) -> int:
    """The number of samples of checked inputs (:func:`check_inputs`): one array, or a tuple or dict of
    arrays (one per model input)."""
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    if isinstance(x, tuple):
        return len(x[0])
    return len(x)


def take_samples(x, stop: int, start: int = 0):
    """Samples ``start:stop`` of checked inputs: one array, or each array of a tuple or dict (one per
    model input)."""
    if isinstance(x, dict):
        return {k: v[start:stop] for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(a[start:stop] for a in x)
    return x[start:stop]


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
            checked: its values are not read); for a model with several inputs, a list or tuple of
            arrays (the model's input order) or a dict of arrays by input name (a single-input
            model takes such a dict too).
        name: the argument's name, used in the message (e.g. ``"train"``, ``"representative_data"``).
        error: the exception class to raise. Defaults to ValueError.
        warn_scale: warn about 0..255 images given to a model with no Rescaling layer. Defaults to True.

    Returns:
        ``x`` as a NumPy array; for several inputs a tuple of arrays in the model's input order (a
        dataset is returned as it is).

    Raises:
        ValueError (or ``error``): an empty set, a sample shape other than the model's, a non-numeric
            array, or NaN/Inf values; for several inputs, a missing or unknown input, or inputs with
            different numbers of samples. The message names ``name`` (and the input).
    """
    specs = model_input_specs(model)
    if len(specs) > 1 or isinstance(x, dict):
        return _check_several(model, x, specs, name, error, warn_scale)
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
    return _check_array(model, x, expected, name, error, warn_scale, f"the model's input `{_input_name(model)}`")


def _check_array(model, x, expected, name: str, error: type, warn_scale: bool, what: str) -> np.ndarray:
    """One array of samples for one model input (`what` names it in the message)."""
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
            f"Invalid value for `{name}`: expected samples of shape {_shape_text(expected)} ({what}). "
            f"Received: samples of shape {_shape_text(arr.shape[1:])} (array {arr.shape})."
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


def _check_several(model, x, specs: list, name: str, error: type, warn_scale: bool):
    """Inputs of a model with several inputs (or a dict for one): a tuple of arrays in input order."""
    names = [n for n, _ in specs]
    listed = ", ".join(f"`{n}`" for n in names)
    if _is_dataset(x):
        spec = x.element_spec
        spec = spec[0] if isinstance(spec, tuple) and len(spec) in (2, 3) and len(specs) > 1 and isinstance(
            spec[0], (tuple, list, dict)) else spec
        given = [spec[n] for n in names if n in spec] if isinstance(spec, dict) else list(spec) \
            if isinstance(spec, (tuple, list)) else [spec]
        if len(given) != len(specs):
            raise error(f"Invalid value for `{name}`: expected batches of {len(specs)} inputs ({listed}). "
                        f"Received: a dataset of {spec}.")
        for (input_name, expected), s in zip(specs, given):
            got = tuple(getattr(s, "shape", ()))[1:]
            if expected is not None and not _shape_matches(expected, got):
                raise error(f"Invalid value for `{name}`: expected batches of samples of shape {_shape_text(expected)} "
                            f"for the model's input `{input_name}`. Received: batches of shape "
                            f"{_shape_text((None,) + tuple(got))}.")
        return x
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        unknown = [k for k in x if k not in names]
        if missing or unknown:
            raise error(
                f"Invalid value for `{name}`: expected a dict of arrays by input name ({listed}). Received: a dict "
                + (f"without {', '.join(f'`{n}`' for n in missing)}" if missing else "")
                + (" and " if missing and unknown else "")
                + (f"with unknown keys {', '.join(f'`{k}`' for k in map(str, unknown))}" if unknown else "") + ".")
        arrays = [x[n] for n in names]
    elif isinstance(x, (list, tuple)) and len(x) == len(specs) and all(
            hasattr(a, "shape") or isinstance(a, (list, tuple)) for a in x):
        arrays = list(x)
    else:
        what = f"a {type(x).__name__} of {len(x)}" if isinstance(x, (list, tuple)) else \
            f"{type(x).__name__}" + (f" of shape {x.shape}" if hasattr(x, "shape") else "")
        raise error(f"Invalid value for `{name}`: expected {len(specs)} arrays, one per model input ({listed}), as "
                    f"a list or tuple in that order or a dict by input name. Received: {what}.")
    checked = tuple(_check_array(model, a, expected, name, error, warn_scale, f"the model's input `{n}`")
                    for (n, expected), a in zip(specs, arrays))
    counts = {n: len(a) for (n, _), a in zip(specs, checked)}
    if len(set(counts.values())) > 1:
        raise error(f"Invalid value for `{name}`: expected as many samples for every input. Received: "
                    + ", ".join(f"{c} for `{n}`" for n, c in counts.items()) + ".")
    return checked[0] if len(checked) == 1 else checked


def check_data(model, data, *, name: str, error: type = ValueError, warn_scale: bool = True):
    """Checks ``(x, y)`` for training or scoring ``model``: the inputs (:func:`check_inputs`), as many
    labels as samples, and labels the model's output can match.

    Labels may be sparse class ids (``(N,)`` or ``(N, 1)``) in ``0..classes-1``, one-hot / probability
    rows of the output's width, or 0/1 for a single-unit (binary) output; for a model with several
    outputs, a list or tuple of label arrays (output order) or a dict by output name, each checked so.

    Args:
        model: the Keras model.
        data: ``(x, y)`` arrays, or a batched ``tf.data.Dataset`` of ``(x, y)`` (shapes checked only).
        name: the argument's name, used in the message (``"train"``, ``"val"``, ``"test"``).
        error: the exception class to raise. Defaults to ValueError.
        warn_scale: see :func:`check_inputs`. Defaults to True.

    Returns:
        ``(x, y)`` as NumPy arrays, ``x`` a tuple of them for several inputs and ``y`` a tuple (or dict)
        for several outputs (a dataset is returned as it is).

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
    outputs = _output_specs(model)
    if len(outputs) > 1 and isinstance(data[1], (list, tuple, dict)):
        return x, _check_several_labels(data[1], outputs, num_samples(x), name, error)
    y = _labels_array(data[1], num_samples(x), name, error)
    _check_labels(model_num_classes(model), y, name, error)
    return x, y


def _labels_array(y, count: int, name: str, error: type, what: str = "") -> np.ndarray:
    y = y if isinstance(y, np.ndarray) else np.asarray(y)
    if y.ndim == 0 or len(y) != count:
        raise error(
            f"Invalid value for `{name}`: expected as many labels{what} as samples. Received: {count} samples and "
            f"{'a scalar' if y.ndim == 0 else len(y)} labels."
        )
    return y


def _output_specs(model) -> list[tuple[str, int | None]]:
    """``(output name, classes)`` of every output of `model`."""
    shape = getattr(model, "output_shape", None)
    shapes = shape if isinstance(shape, list) else [shape]
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(shapes):
        names = [f"output_{i}" for i in range(len(shapes))]
    return [(n, None if s is None or s[-1] is None else int(s[-1])) for n, s in zip(names, shapes)]


def _check_several_labels(y, outputs: list, count: int, name: str, error: type):
    """Labels of a model with several outputs: a list / tuple in output order or a dict by output name."""
    names = [n for n, _ in outputs]
    if isinstance(y, dict):
        if sorted(y) != sorted(names):
            raise error(f"Invalid value for `{name}`: expected a dict of labels by output name "
                        f"({', '.join(f'`{n}`' for n in names)}). Received: keys {sorted(map(str, y))}.")
        arrays = [y[n] for n in names]
    elif len(y) != len(outputs):
        raise error(f"Invalid value for `{name}`: expected {len(outputs)} label arrays, one per model output "
                    f"({', '.join(f'`{n}`' for n in names)}). Received: {len(y)}.")
    else:
        arrays = list(y)
    checked = []
    for (output, classes), labels in zip(outputs, arrays):
        labels = _labels_array(labels, count, name, error, f" for the output `{output}`")
        _check_labels(classes, labels, name, error)
        checked.append(labels)
    return {n: a for n, a in zip(names, checked)} if isinstance(y, dict) else tuple(checked)


def _check_labels(classes: int | None, y: np.ndarray, name: str, error: type) -> None:
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise error(f"Invalid value for `{name}`: expected numeric labels. Received: labels of dtype {y.dtype}.")
    if np.issubdtype(y.dtype, np.inexact) and not np.isfinite(y).all():
        bad = np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).all(axis=1))
        raise error(f"Invalid value for `{name}`: expected finite labels. Received: NaN or Inf in {len(bad)} "
                    f"labels (the first at index {int(bad[0])}).")
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
