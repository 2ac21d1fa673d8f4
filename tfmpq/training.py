"""The Keras side of a :class:`~tfmpq.recipe.FinetuneRecipe`: a cosine learning-rate schedule that works on an
already traced model, and knowledge distillation from the float model with targets computed once.

Distillation (Hinton et al. 2015, sec. 2) usually runs the teacher beside the student on every batch. Here
the teacher is the fixed float model and the training images are not augmented, so its outputs are the
same on every epoch: they are computed once and packed beside the labels, ``y = [one_hot(label) |
teacher probabilities]`` (``2 * num_classes`` columns), and the loss unpacks them. The QAT model stays the
model that is exported (no wrapper model), and a fine-tune costs no teacher forward pass.
"""
from __future__ import annotations

import math

import numpy as np

from tfmpq._keras import keras, tf
from tfmpq.checks import num_samples

__all__ = ["CosineDecay", "DistillationLoss", "packed_accuracy", "teacher_probabilities", "distill_targets"]

_EPS = 1e-7


class CosineDecay(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every training batch to
    ``peak * (1 + cos(pi * step / total_steps)) / 2`` (Loshchilov & Hutter 2017, eq. 5, one cycle, no
    restart), and restores the rate it found at the end of training.

    A callback rather than a ``LearningRateSchedule`` so that a model compiled and traced once (the search's
    shared variable-bit model) can take it: the rate is a variable the traced step reads.

    Args:
        peak: the learning rate of the first step.
        total_steps: the steps over which it decays to 0 (epochs x batches per epoch).
    """

    def __init__(self, peak: float, total_steps: int):
        super().__init__()
        self.peak, self.total_steps = float(peak), max(1, int(total_steps))
        self.step, self._saved = 0, None

    def rate(self, step: int) -> float:
        """The learning rate of training step ``step`` (0-based)."""
        return 0.5 * self.peak * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))

    def on_train_begin(self, logs=None):
        self.step = 0
        self._saved = float(keras.backend.get_value(self.model.optimizer.learning_rate))

    def on_train_batch_begin(self, batch, logs=None):
        keras.backend.set_value(self.model.optimizer.learning_rate, self.rate(self.step))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1

    def on_train_end(self, logs=None):
        if self._saved is not None:
            keras.backend.set_value(self.model.optimizer.learning_rate, self._saved)


def teacher_probabilities(model, x, from_logits: bool, batch_size: int = 512) -> np.ndarray:
    """The float model's class probabilities on ``x`` (softmax of its logits when ``from_logits``)."""
    outs = []
    for i in range(0, num_samples(x), batch_size):  # x: one array, or a list / dict of them (several inputs)
        out = model(tf.nest.map_structure(lambda a: tf.constant(a[i:i + batch_size]), x), training=False)
        outs.append(np.asarray(tf.nn.softmax(out) if from_logits else out, np.float32))
    return np.concatenate(outs)


def distill_targets(y, teacher: np.ndarray) -> np.ndarray:
    """``[one_hot(y) | teacher]``: the labels and the teacher's probabilities in one array.

    Args:
        y: class ids ``(N,)`` (or ``(N, 1)``) or one-hot labels ``(N, C)``.
        teacher: ``(N, C)`` probabilities.

    Returns:
        A float32 array ``(N, 2C)``.
    """
    y = np.asarray(y)
    num_classes = teacher.shape[-1]
    one_hot = y.astype(np.float32) if y.ndim == 2 and y.shape[-1] == num_classes else \
        np.eye(num_classes, dtype=np.float32)[y.reshape(-1).astype(np.int64)]
    return np.concatenate([one_hot, teacher.astype(np.float32)], axis=-1)


def _unpack(y_true, num_classes: int):
    """(one-hot labels, teacher probabilities or None) from packed targets or plain (validation) labels."""
    if y_true.shape.rank == 2 and y_true.shape[-1] == 2 * num_classes:
        return y_true[:, :num_classes], y_true[:, num_classes:]
    if y_true.shape.rank == 2 and y_true.shape[-1] == num_classes:
        return tf.cast(y_true, tf.float32), None
    return tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_classes), None


class DistillationLoss(keras.losses.Loss):
    """Cross-entropy with the labels plus the temperature-softened cross-entropy with the teacher.

    ``(1 - weight) * CE(labels, p) + weight * T^2 * CE(softmax(log t / T), softmax(log p / T))`` on packed
    targets (:func:`distill_targets`; Hinton et al. 2015, sec. 2: the ``T^2`` keeps the soft term's gradient
    scale); plain cross-entropy on labels (validation). The KL divergence of the paper differs from the
    second term by the teacher's entropy, a constant.

    Args:
        num_classes: classes of the model's output.
        weight: the teacher's share, in [0, 1].
        temperature: ``T`` > 0.
        from_logits: the model outputs logits (else probabilities).
    """

    def __init__(self, num_classes: int, weight: float = 0.5, temperature: float = 1.0, from_logits: bool = False,
                 name: str = "distillation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes, self.weight = int(num_classes), float(weight)
        self.temperature, self.from_logits = float(temperature), bool(from_logits)

    def call(self, y_true, y_pred):
        labels, teacher = _unpack(y_true, self.num_classes)
        log_p = tf.nn.log_softmax(y_pred) if self.from_logits else tf.math.log(tf.clip_by_value(y_pred, _EPS, 1.0))
        ce = -tf.reduce_sum(labels * log_p, axis=-1)
        if teacher is None or self.weight == 0:
            return ce
        t = self.temperature
        soft_teacher = tf.nn.softmax(tf.math.log(tf.clip_by_value(teacher, _EPS, 1.0)) / t)
        soft = -tf.reduce_sum(soft_teacher * tf.nn.log_softmax(log_p / t), axis=-1) * t * t
        return (1.0 - self.weight) * ce + self.weight * soft

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "weight": self.weight,
                "temperature": self.temperature, "from_logits": self.from_logits}


def packed_accuracy(num_classes: int):
    """Keras' "accuracy" (argmax) for packed targets (training) and plain labels (validation): the logs keep
    the names ``accuracy`` / ``val_accuracy`` that the best-epoch choice reads."""

    def accuracy(y_true, y_pred):
        labels, _ = _unpack(y_true, num_classes)
        return tf.cast(tf.equal(tf.argmax(labels, axis=-1), tf.argmax(y_pred, axis=-1)), tf.float32)

    return accuracy
