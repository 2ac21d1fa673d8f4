"""Classification accuracy: one definition for search scores, held-out reports, exports and the CLI.

Keras's ``"accuracy"`` metric, computed here so every stage counts the same hits: the argmax of a
multi-class output against integer (sparse) or one-hot labels; for a single output unit, a threshold
of 0.5 on probabilities or 0 on logits. A non-finite output counts as no hit at all (a diverged
model is not "20 % accurate" by chance). NumPy only; the model is called, never compiled.
"""
from __future__ import annotations

import numpy as np

from tfmpq.checks import take_samples

__all__ = ["hits", "model_accuracy", "model_hits"]


def hits(outputs, labels, from_logits: bool = False) -> np.ndarray | None:
    """Per sample, whether ``outputs`` classify ``labels`` correctly.

    Args:
        outputs: model outputs, ``(N, classes)`` (or ``(N, 1)`` for a binary classifier).
        labels: ``(N,)`` integer labels, ``(N, classes)`` one-hot rows or ``(N, 1)`` binary labels.
        from_logits: a single output unit holds a logit (threshold 0) instead of a probability
            (threshold 0.5). Defaults to False.

    Returns:
        A bool array of length N, or None when an output is not finite.
    """
    out, y = np.asarray(outputs), np.asarray(labels)
    if not np.all(np.isfinite(out)):
        return None
    out = out.reshape(len(out), -1)
    if out.shape[-1] == 1:
        pred = (out[:, 0] > (0.0 if from_logits else 0.5)).astype(int)
        return pred == y.reshape(len(y), -1)[:, 0].astype(int)
    truth = y.argmax(-1) if y.ndim == 2 and y.shape[-1] == out.shape[-1] else y.reshape(len(y))
    return out.argmax(-1) == truth


def model_hits(model, x, y, batch_size: int = 256, from_logits: bool = False) -> np.ndarray:
    """Per sample of ``(x, y)``, whether ``model`` (called in inference mode) classifies it correctly.

    Args:
        model: a Keras model (float or QAT).
        x: inputs (a tuple or dict of arrays for a model with several inputs).
        y: labels (see :func:`hits`).
        batch_size: inference batch size. Defaults to 256.
        from_logits: see :func:`hits`. Defaults to False.

    Returns:
        A bool array of ``len(y)``; a batch with a non-finite output counts as all wrong.
    """
    out = []
    for i in range(0, len(y), batch_size):
        xb, yb = take_samples(x, i + batch_size, i), y[i:i + batch_size]
        h = hits(np.asarray(model(xb, training=False)), yb, from_logits)
        out.append(np.zeros(len(yb), bool) if h is None else h)
    return np.concatenate(out) if out else np.zeros(0, bool)


def model_accuracy(model, x, y, batch_size: int = 256, from_logits: bool = False) -> float:
    """The fraction of ``(x, y)`` that ``model`` classifies correctly (NaN for an empty set).

    Args:
        model: a Keras model (float or QAT).
        x: inputs.
        y: labels (see :func:`hits`).
        batch_size: inference batch size. Defaults to 256.
        from_logits: see :func:`hits`. Defaults to False.

    Returns:
        The accuracy in [0, 1].
    """
    h = model_hits(model, x, y, batch_size, from_logits)
    return float(h.mean()) if len(h) else float("nan")
