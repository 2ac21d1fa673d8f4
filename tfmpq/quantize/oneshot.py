"""One-shot training of a shared variable-bit model, and per-policy re-calibration.

One set of weights is trained for every policy at once (weight sharing across bit-widths: Bit-Mixer,
Bulat & Tzimiropoulos, ICCV 2021; Once Quantization-Aware Training, Shen et al., AAAI 2021;
Any-Precision DNNs, Yu et al., AAAI 2021). Each training step follows the *sandwich rule* of Yu &
Huang (ICCV 2019, "Universally Slimmable Networks", sec. 3.3): the gradients of the highest-bit
policy, the lowest-bit policy and ``num_random`` random policies are computed on the same batch and
*accumulated* into one optimizer step. Accumulating (rather than cycling one policy per step) gives
every step the gradient of the whole bit range, so no policy's update is undone by the next step's
policy, and the extremes are trained on every batch. With ``distill=True`` the lower-bit policies learn
from the highest-bit policy's output on the same batch (in-place distillation, Yu & Huang, sec. 3.4).

The shared BatchNormalization statistics and activation ranges are a mix over all policies; a
policy's own are re-estimated before it is scored (:func:`recalibrate`; Yu & Huang, sec. 3.2, "BN
calibration"; Bulat & Tzimiropoulos, sec. 3.3).
"""
from __future__ import annotations

import time

import numpy as np

from tfmpq._keras import keras, tf
from tfmpq.quantize.api import _mode_vars
from tfmpq.quantize.layers import NEVER


def bit_values(vbm, policy) -> np.ndarray:
    """The values ``VariableBitModel.set_policy(policy)`` assigns: every bit variable of
    ``vbm._bit_variables()`` flattened, in that order (a group's channel bits take one value per channel)."""
    return bits_row(vbm, dict(zip(policy.group_names, policy.weight_bits)),
                    dict(zip(policy.group_names, policy.activation_bits)))


def bits_row(vbm, weight: dict, activation: dict) -> np.ndarray:
    """One row of bit values from per-group weight and activation bits (group name -> bits).

    Args:
        vbm: the ``VariableBitModel``.
        weight: group name -> weight bits: an int, or one bit-width per output channel (a channel-wise
            sampler, e.g. one width per cluster of channels, passes its per-channel bits here).
        activation: group name -> activation bits.

    Returns:
        ``vbm.bit_values(weight, activation)``: a float32 vector, in ``vbm._bit_variables()`` order.
    """
    return vbm.bit_values(weight, activation)


def _bit_slices(bit_vars) -> list[tuple[int, int, tuple]]:
    """(start, stop, shape) of each bit variable's values in a row of :func:`bits_row`."""
    out, start = [], 0
    for v in bit_vars:
        size = int(np.prod(v.shape.as_list())) if v.shape.rank else 1
        out.append((start, start + size, tuple(v.shape.as_list())))
        start += size
    return out


def sandwich(vbm, rng: np.random.Generator, weight_choices, activation_choices, num_random: int) -> np.ndarray:
    """The policies of one step as rows of bit values: highest bits, lowest bits, ``num_random`` random.

    Args:
        vbm: the ``VariableBitModel``.
        rng: draws the random policies (each group's weight and activation bits uniformly from the choices).
        weight_choices, activation_choices: the bit-widths a group may take.
        num_random: random policies per step.

    Returns:
        A ``(2 + num_random, row size)`` float32 array of :func:`bits_row` rows; row 0 is the
        highest-bit policy.
    """
    names = list(vbm._groups)  # noqa: SLF001
    rows = [
        bits_row(vbm, {n: max(weight_choices) for n in names}, {n: max(activation_choices) for n in names}),
        bits_row(vbm, {n: min(weight_choices) for n in names}, {n: min(activation_choices) for n in names}),
    ]
    for _ in range(num_random):
        rows.append(bits_row(
            vbm, {n: int(rng.choice(weight_choices)) for n in names}, {n: int(rng.choice(activation_choices)) for n in names}
        ))
    return np.stack(rows)


def _distill_loss(num_outputs: int, from_logits: bool):
    """Cross-entropy against the teacher's (highest-bit policy's) probabilities (Yu & Huang, sec. 3.4)."""
    if num_outputs == 1:
        bce = keras.losses.BinaryCrossentropy(from_logits=from_logits)

        def loss(teacher, student):
            target = tf.sigmoid(teacher) if from_logits else teacher
            return bce(tf.stop_gradient(target), student)

        return loss
    cce = keras.losses.CategoricalCrossentropy(from_logits=from_logits)

    def loss(teacher, student):
        target = tf.nn.softmax(teacher) if from_logits else teacher
        return cce(tf.stop_gradient(target), student)

    return loss


def train_shared(vbm, data, *, epochs: int, optimizer, loss, weight_choices, activation_choices,
                 num_random: int = 2, distill: bool = False, from_logits: bool = False, seed: int = 0) -> dict:
    """Trains the shared weights of ``vbm`` for every policy at once (the sandwich rule, gradients accumulated).

    Args:
        vbm: a ``VariableBitModel`` (its weights are trained in place).
        data: a callable returning the batched training ``tf.data.Dataset`` of one epoch.
        epochs: passes over ``data``.
        optimizer: a tf_keras optimizer (one step per batch).
        loss: the task loss ``loss(y_true, y_pred)``.
        weight_choices, activation_choices: the bit-widths sampled per group.
        num_random: random policies per step besides the highest and the lowest. Defaults to 2.
        distill: the lower-bit policies learn from the highest-bit policy's output instead of the labels
            (in-place distillation). Defaults to False.
        from_logits: whether the model outputs logits (for the distillation loss). Defaults to False.
        seed: seeds the policies drawn per step. Defaults to 0.

    Returns:
        ``{"seconds", "steps", "loss": [mean loss of the highest-bit policy per epoch], ...}``.
    """
    model = vbm.model
    bit_vars = vbm._bit_variables()  # noqa: SLF001
    slices = _bit_slices(bit_vars)
    trainable = model.trainable_variables
    k = 2 + int(num_random)
    loss = keras.losses.get(loss)
    teach = _distill_loss(int(model.output_shape[-1]), from_logits) if distill else None

    @tf.function
    def step(x, y, bits):
        acc = [tf.zeros_like(v) for v in trainable]
        teacher = None
        top_loss = tf.constant(0.0)
        for i in range(k):  # unrolled: one forward/backward per policy of the sandwich
            for v, (start, stop, shape) in zip(bit_vars, slices):
                v.assign(tf.reshape(bits[i, start:stop], shape))
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                value = tf.reduce_mean(loss(y, out) if teacher is None else teach(teacher, out))
                if model.losses:  # weight regularizers, as fit() adds them
                    value += tf.add_n(model.losses)
            grads = tape.gradient(value, trainable, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            acc = [a + g for a, g in zip(acc, grads)]
            if i == 0:
                top_loss = value
                if distill:
                    teacher = tf.stop_gradient(out)
        optimizer.apply_gradients(zip([a / k for a in acc], trainable))
        return top_loss

    rng = np.random.default_rng(seed)
    saved_bits = [v.numpy() for v in bit_vars]
    start = time.perf_counter()
    losses, steps = [], 0
    for _ in range(int(epochs)):
        epoch_losses = []
        for x, y in data():
            bits = sandwich(vbm, rng, weight_choices, activation_choices, num_random)
            value = float(step(x, y, tf.constant(bits)))
            if not np.isfinite(value):
                raise FloatingPointError(f"One-shot training diverged at step {steps} (loss {value}).")
            epoch_losses.append(value)
            steps += 1
        losses.append(float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
    for v, value in zip(bit_vars, saved_bits):
        v.assign(value)
    return {"seconds": time.perf_counter() - start, "steps": steps, "loss": losses, "epochs": int(epochs),
            "policies_per_step": k, "distill": bool(distill)}


def recalibration_variables(vbm) -> list:
    """The variables :func:`recalibrate` changes (every non-trainable variable but the bits): what a
    one-shot evaluator snapshots and restores around each candidate."""
    bits = {id(v) for v in vbm._bit_variables()}  # noqa: SLF001
    return [v for v in vbm.model.non_trainable_variables if id(v) not in bits]


def restorer(vbm):
    """A function that sets every :func:`recalibration_variables` of ``vbm`` back to its value now,
    exactly, in one traced call (the snapshot a one-shot evaluator restores after each candidate)."""
    variables = recalibration_variables(vbm)
    values = [tf.constant(v.numpy()) for v in variables]

    @tf.function
    def restore():
        for v, value in zip(variables, values):
            v.assign(value)

    return restore


def recalibrate(vbm, x: np.ndarray, batch_size: int) -> None:
    """Re-estimates the BatchNormalization statistics and activation ranges of ``vbm``'s current policy.

    BN: the model runs in training mode on each batch of ``x``; each folded BN's batch mean and variance
    are read back from its moving-average update (``m1 = m0 * momentum + batch * (1 - momentum)``, from
    the same ``m0`` every batch) and the moving statistics are set to their average over the batches
    (the cumulative average of Yu & Huang 2019, sec. 3.2). Activation ranges: then the running
    min/max over ``x`` in inference mode (``tfmpq.calibrate``). Trainable weights are not changed.

    Every step runs in functions traced once per model (:class:`_Recalibration`): a candidate costs the
    forward passes and a few calls, not ~100 eager variable reads and writes.

    Args:
        vbm: the ``VariableBitModel``, set to the policy.
        x: input samples (a few training batches).
        batch_size: batch size.
    """
    cache = vbm.__dict__.get("_tfmpq_recalibration")
    if cache is None:
        cache = vbm.__dict__["_tfmpq_recalibration"] = _Recalibration(vbm)
    cache(x, batch_size)


class _Recalibration:
    """:func:`recalibrate` for one ``VariableBitModel``: its variables found and its steps traced once."""

    def __init__(self, vbm):
        groups = [inner for _, inner in vbm._groups.values() if inner.bn_config is not None]  # noqa: SLF001
        self.calibrating = _mode_vars(vbm.model, "tfmpq_calibrating")
        self.seen = _mode_vars(vbm.model, "tfmpq_seen")
        self.bn = groups
        # per folded BN: the shared statistics m0 (restored before each batch) and the sums of the batch ones
        self.m0 = [(tf.Variable(g.moving_mean), tf.Variable(g.moving_variance)) for g in groups]
        self.sums = [(tf.Variable(tf.zeros_like(g.moving_mean)), tf.Variable(tf.zeros_like(g.moving_variance)))
                     for g in groups]
        self.momentum = [float(g.bn_config.get("momentum", 0.99)) for g in groups]
        self.train_forward = _training_forward(vbm)
        self.infer_forward = inference_forward(vbm)
        self._x, self._batch_size, self._batches, self._chunks = None, None, [], []
        self.begin_bn = tf.function(self._begin_bn)
        self.bn_batch = tf.function(self._bn_batch, reduce_retracing=True)
        self.end_bn = tf.function(self._end_bn)
        self.begin_calibration = tf.function(self._begin_calibration)
        self.end_calibration = tf.function(self._end_calibration)

    def __call__(self, x: np.ndarray, batch_size: int) -> None:
        if self._x is not x or self._batch_size != batch_size:
            # the evaluator passes the same calibration array every candidate: made into tensors once.
            # BN statistics come per batch of ``batch_size`` (what training sees); the running min/max
            # of the ranges does not depend on the batching: inference in chunks of >= 512 (fewer, larger
            # calls)
            chunk = max(batch_size, 512)
            self._x, self._batch_size = x, batch_size
            self._batches = [tf.constant(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
            self._chunks = [tf.constant(x[i:i + chunk]) for i in range(0, len(x), chunk)]
        if self.bn:
            self.begin_bn()
            for xb in self._batches:
                self.bn_batch(xb)
            self.end_bn(tf.constant(float(len(self._batches))))
        if not self.calibrating:
            return
        self.begin_calibration()
        try:
            for xb in self._chunks:
                self.infer_forward(xb)
        finally:
            self.end_calibration()

    def _begin_bn(self):
        for g, (m, v), (sm, sv) in zip(self.bn, self.m0, self.sums):
            g.freeze_step.assign(NEVER)  # batch statistics, whatever the freeze step (restored by the caller)
            m.assign(g.moving_mean)
            v.assign(g.moving_variance)
            sm.assign(tf.zeros_like(sm))
            sv.assign(tf.zeros_like(sv))
        for s in self.seen:
            s.assign(0.0)  # activation ranges follow this policy's batches, not the shared mix

    def _bn_batch(self, xb):
        for g, (m, v) in zip(self.bn, self.m0):
            g.moving_mean.assign(m)
            g.moving_variance.assign(v)
        self.train_forward(xb)
        for g, (m, v), (sm, sv), momentum in zip(self.bn, self.m0, self.sums, self.momentum):
            sm.assign_add((g.moving_mean - momentum * m) / (1.0 - momentum))
            sv.assign_add((g.moving_variance - momentum * v) / (1.0 - momentum))

    def _end_bn(self, n):
        for g, (sm, sv) in zip(self.bn, self.sums):
            g.moving_mean.assign(sm / n)
            g.moving_variance.assign(tf.maximum(sv / n, 0.0))

    def _begin_calibration(self):
        # tfmpq.calibrate's running min/max, through the traced inference function (the modes are variables)
        for s in self.seen:
            s.assign(0.0)
        for c in self.calibrating:
            c.assign(1.0)

    def _end_calibration(self):
        for c in self.calibrating:
            c.assign(0.0)


def _traced(vbm, training: bool):
    attr = "_tfmpq_forward_train" if training else "_tfmpq_forward_infer"
    fn = getattr(vbm, attr, None)
    if fn is None:
        model, mode = vbm.model, training

        @tf.autograph.experimental.do_not_convert  # plain Python already (AutoGraph warned it could not convert it)
        def forward(x, training=None):  # ``training`` is accepted (model-like calls) and ignored
            return model(x, training=mode)

        fn = tf.function(forward, reduce_retracing=True)
        setattr(vbm, attr, fn)
    return fn


def _training_forward(vbm):
    """``model(x, training=True)``, traced once per model (the BN re-estimation passes)."""
    return _traced(vbm, True)


def inference_forward(vbm):
    """``model(x, training=False)``, traced once per model: calibration and validation of a candidate
    without Keras' eager per-layer overhead (bits and modes are variables, so one trace serves all)."""
    return _traced(vbm, False)
