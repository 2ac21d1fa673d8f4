"""Layer importance from pre-trained weights, for BBPSO-Quantizer's LIGPI (Tmamna et al., sec. 4.3.1).

Pure NumPy: the caller hands in each group's float kernel as an array (:func:`kernels_of` reads them
from a Keras model by duck typing, without importing TensorFlow), so strategies stay TF-free.

* eq. 6: ``W_l = (1 / n_l) * sum_k ||w_l^k||_1``, the mean L1 norm of layer ``l``'s ``n_l`` filters.
* eq. 5: the importance squashes ``W_l`` through a sigmoid scaled by ``beta``. The extracted text of
  eq. 5 is garbled; we read it as ``L_l = beta / (1 + exp(-alpha * w_l))`` with ``w_l`` the min-max
  normalisation of ``W_l`` over the layers onto [-1, 1], ``alpha`` the normalisation range (the
  sigmoid's input spans [-alpha, alpha]) and ``beta`` in [0.5, 1] the largest importance. So the
  layer with the largest mean filter norm gets ``beta * sigmoid(alpha)``, the smallest
  ``beta * sigmoid(-alpha)``, and all layers get ``beta / 2`` when their norms are equal.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np


def mean_filter_l1(kernel: np.ndarray, kind: str | None = None) -> float:
    """Eq. 6: the mean L1 norm of a layer's filters.

    A filter is everything feeding one output channel. Keras stores kernels output-channel last
    (Dense ``(in, out)``, Conv ``(kh, kw, in, out)``); a depthwise kernel ``(kh, kw, in, mult)`` has
    ``in * mult`` filters of ``kh * kw`` weights each.

    Args:
        kernel: the float kernel.
        kind: the layer class name (``"DepthwiseConv2D"`` switches the filter axis). Defaults to None.

    Returns:
        ``W_l`` of eq. 6.

    Raises:
        ValueError: an empty or 0-d kernel.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim == 0 or k.size == 0:
        raise ValueError(f"Invalid kernel: expected a non-empty array with an output axis. Received shape {k.shape}.")
    if kind is not None and "Depthwise" in kind and k.ndim >= 3:
        filters = k.reshape(-1, k.shape[-2] * k.shape[-1])  # one filter per (in, mult) pair
    else:
        filters = k.reshape(-1, k.shape[-1])  # one column per output channel
    return float(np.abs(filters).sum(axis=0).mean())


def layer_importance(
    kernels: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    *,
    kinds: Sequence[str | None] | None = None,
    alpha: float = 4.0,
    beta: float = 1.0,
) -> np.ndarray:
    """Eq. 5-6: the importance of each layer, in (0, beta).

    Args:
        kernels: each layer's float kernel (a sequence, or a name -> kernel mapping in layer order).
        kinds: each layer's class name (for depthwise kernels). Defaults to None.
        alpha: the normalisation range of eq. 5 (sigmoid steepness), > 0. Defaults to 4.0.
        beta: the largest importance, in [0.5, 1] (eq. 5). Defaults to 1.0.

    Returns:
        A float array, one importance per layer.

    Raises:
        ValueError: no kernels, ``alpha <= 0`` or ``beta`` outside [0.5, 1].

    Example:
    >>> layer_importance([np.ones((4, 2)), 3 * np.ones((4, 2))]).round(3)
    array([0.018, 0.982])
    """
    if not (isinstance(alpha, (int, float)) and alpha > 0):
        raise ValueError(f"Invalid value for `alpha`: expected a number > 0. Received: alpha={alpha!r}")
    if not (isinstance(beta, (int, float)) and 0.5 <= beta <= 1.0):
        raise ValueError(f"Invalid value for `beta`: expected a number in [0.5, 1]. Received: beta={beta!r}")
    arrays = list(kernels.values()) if isinstance(kernels, Mapping) else list(kernels)
    if not arrays:
        raise ValueError("Invalid value for `kernels`: expected at least one kernel. Received: none.")
    kinds = list(kinds) if kinds is not None else [None] * len(arrays)
    norms = np.array([mean_filter_l1(k, kind) for k, kind in zip(arrays, kinds)])  # eq. 6
    span = norms.max() - norms.min()
    # eq. 5: min-max normalise onto [-1, 1] (all equal -> 0, i.e. importance beta / 2), then a sigmoid
    # over [-alpha, alpha] scaled by beta.
    w = np.zeros_like(norms) if span <= 0 or not math.isfinite(span) else 2.0 * (norms - norms.min()) / span - 1.0
    return beta / (1.0 + np.exp(-alpha * w))


def kernels_of(model, group_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The float kernel of each named layer of a Keras model, as NumPy (duck typing, no TF import).

    Args:
        model: a Keras model (``model.get_layer(name).get_weights()[0]`` is the kernel).
        group_names: the weighted layers' names (``SearchSpace.group_names``).

    Returns:
        ``{name: kernel}`` in ``group_names`` order.

    Raises:
        ValueError: a name that is not a weighted layer of ``model``.
    """
    out = {}
    for name in group_names:
        try:
            weights = model.get_layer(name).get_weights()
        except ValueError:
            weights = []
        if not weights:
            raise ValueError(
                f"Cannot compute layer importance: the model has no weighted layer named `{name}`. "
                "Pass `kernels={group_name: kernel}` instead."
            )
        out[name] = np.asarray(weights[0])
    return out


def kinds_of(model, group_names: Sequence[str]) -> list[str]:
    """Each named layer's class name (for :func:`mean_filter_l1`)."""
    return [type(model.get_layer(n)).__name__ for n in group_names]
