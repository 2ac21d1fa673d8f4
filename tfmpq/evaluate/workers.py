"""What a worker process needs: the float model and the loss in picklable form, and TensorFlow set up first.

``Evaluator.spec()`` makes an ``EvaluatorSpec`` (the float model as ``.keras`` bytes, the arrays, the
loss, the configuration and, for one-shot scoring, the trained shared weights); the search's executors
(``tfmpq.search.executors``) ship it to each worker once and call it there.
"""
from __future__ import annotations

import os
import tempfile
import warnings

from tfmpq._keras import keras, tf


def serialized_loss(loss):
    """``loss`` as :class:`EvaluatorSpec` ships it: a name as is, a Loss object as its Keras config.

    Raises:
        ValueError: a loss Keras cannot serialize.
    """
    if isinstance(loss, str):
        return loss
    try:
        out = {"keras_config": keras.losses.serialize(loss)}
        keras.losses.deserialize(out["keras_config"])
    except Exception as e:
        raise ValueError(
            f"Cannot send this Evaluator to worker processes: its `loss` ({loss!r}) cannot be "
            f"serialized by Keras ({e}). Pass a built-in loss or a registered Loss subclass."
        ) from None
    return out


def model_bytes(model) -> bytes:
    """The model as ``.keras`` file bytes."""
    with tempfile.TemporaryDirectory(prefix="tfmpq-spec-") as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def model_from_bytes(data: bytes):
    """Inverse of :func:`model_bytes`. ``safe_mode=False``: the bytes come from this process's own
    model (a Lambda layer's code is trusted)."""

    with tempfile.TemporaryDirectory(prefix="tfmpq-spec-") as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(data)
        try:
            return keras.models.load_model(path, compile=False, safe_mode=False)
        except Exception as e:
            raise ValueError(
                f"A worker could not rebuild the float model from its .keras copy ({type(e).__name__}: {e}). "
                "Custom layers must be importable and registered with keras.saving.register_keras_serializable."
            ) from None


def configure_tensorflow(threads: int | None = None, use_gpu: bool = True) -> bool:
    """Sets up this process's TensorFlow before its first op (the settings are fixed after it).

    Worker processes of a parallel search call it first thing; call it yourself to give a serial run
    the workers' thread count (QAT scores on CPU depend on it: the order of float sums).

    Args:
        threads: caps the intra-op thread pool (inter-op: at most 2), so that N workers share the
            CPUs instead of oversubscribing them; None leaves TensorFlow's default.
        use_gpu: False hides the GPUs (a Ray actor given no GPU must not take one's memory); True lets
            each visible GPU grow its memory on demand, so several workers can share it.

    Returns:
        Whether ``threads`` is in effect (True when None). When TensorFlow has already run an op, the
        thread pools cannot change: a ``RuntimeWarning`` says so and False is returned.
    """

    applied = True
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))
        except RuntimeError:
            applied = tf.config.threading.get_intra_op_parallelism_threads() == int(threads)
            if not applied:
                warnings.warn(
                    f"configure_tensorflow(threads={threads}) has no effect: TensorFlow already runs in this process "
                    "with its thread pools fixed. Call it before TensorFlow's first op.", RuntimeWarning, stacklevel=2,
                )
    try:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus and not use_gpu:
            tf.config.set_visible_devices([], "GPU")
        elif gpus:
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
    except (RuntimeError, ValueError):  # the GPUs were initialised already: their settings stay
        pass
    return applied
