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
    """The values ``VariableBitModel.set_policy(policy)`` assigns, in ``vbm._bit_variables()`` order."""
    other = 8.0 if any(a <= 8 for a in policy.activation_bits) else 32.0
    out = [other] * len(vbm._other_bits)  # noqa: SLF001
    bits = dict(zip(policy.group_names, zip(policy.weight_bits, policy.activation_bits)))
    for name in vbm._groups:  # noqa: SLF001 - the order of _bit_variables
        w, a = bits[name]
        out += [float(w), float(a)]
    return np.asarray(out, np.float32)


def _bits_row(vbm, weight: dict, activation: dict) -> np.ndarray:
    """One row of bit values from per-group weight and activation bits (group name -> bits)."""
    acts = list(activation.values())
    other = 8.0 if any(a <= 8 for a in acts) else 32.0
    row = [other] * len(vbm._other_bits)  # noqa: SLF001
    for name in vbm._groups:  # noqa: SLF001
        row += [float(weight[name]), float(activation[name])]
    return np.asarray(row, np.float32)


def sandwich(vbm, rng: np.random.Generator, weight_choices, activation_choices, num_random: int) -> np.ndarray:
    """The policies of one step as rows of bit values: highest bits, lowest bits, ``num_random`` random.

    Args:
        vbm: the ``VariableBitModel``.
        rng: draws the random policies (each group's weight and activation bits uniformly from the choices).
        weight_choices, activation_choices: the bit-widths a group may take.
        num_random: random policies per step.

    Returns:
        A ``(2 + num_random, num_bit_variables)`` float32 array; row 0 is the highest-bit policy.
    """
    names = list(vbm._groups)  # noqa: SLF001
    rows = [
        _bits_row(vbm, {n: max(weight_choices) for n in names}, {n: max(activation_choices) for n in names}),
        _bits_row(vbm, {n: min(weight_choices) for n in names}, {n: min(activation_choices) for n in names}),
    ]
    for _ in range(num_random):
        rows.append(_bits_row(
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
            for j, v in enumerate(bit_vars):
                v.assign(bits[i, j])
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


def recalibrate(vbm, x: np.ndarray, batch_size: int) -> None:
    """Re-estimates the BatchNormalization statistics and activation ranges of ``vbm``'s current policy.

    BN: the model runs in training mode on each batch of ``x``; each folded BN's batch mean and variance
    are read back from its moving-average update (``m1 = m0 * momentum + batch * (1 - momentum)``, from
    the same ``m0`` every batch) and the moving statistics are set to their average over the batches
    (the cumulative average of Yu & Huang 2019, sec. 3.2). Activation ranges: then the running
    min/max over ``x`` in inference mode (``tfmpq.calibrate``). Trainable weights are not changed.

    Args:
        vbm: the ``VariableBitModel``, set to the policy.
        x: input samples (a few training batches).
        batch_size: batch size.
    """
    groups = [inner for _, inner in vbm._groups.values() if inner.bn_config is not None]  # noqa: SLF001
    if groups:
        for inner in groups:
            inner.freeze_step.assign(NEVER)  # batch statistics, whatever the freeze step (restored by the caller)
        for v in _cached_mode_vars(vbm, "tfmpq_seen"):
            v.assign(0.0)  # activation ranges follow this policy's batches, not the shared mix
        m0 = [(inner.moving_mean.numpy(), inner.moving_variance.numpy()) for inner in groups]
        sums = [[np.zeros_like(mean), np.zeros_like(var)] for mean, var in m0]
        forward = _training_forward(vbm)
        n = 0
        for i in range(0, len(x), batch_size):
            for inner, (mean, var) in zip(groups, m0):
                inner.moving_mean.assign(mean)
                inner.moving_variance.assign(var)
            forward(tf.constant(x[i:i + batch_size]))
            for inner, (mean, var), acc in zip(groups, m0, sums):
                momentum = float(inner.bn_config.get("momentum", 0.99))
                acc[0] += (inner.moving_mean.numpy() - momentum * mean) / (1.0 - momentum)
                acc[1] += (inner.moving_variance.numpy() - momentum * var) / (1.0 - momentum)
            n += 1
        for inner, (mean_sum, var_sum) in zip(groups, sums):
            inner.moving_mean.assign(mean_sum / n)
            inner.moving_variance.assign(np.maximum(var_sum / n, 0.0))
    # tfmpq.calibrate's running min/max, through the traced inference function (the modes are variables)
    calibrating, seen = _cached_mode_vars(vbm, "tfmpq_calibrating"), _cached_mode_vars(vbm, "tfmpq_seen")
    if not calibrating:
        return
    for v in seen:
        v.assign(0.0)
    for v in calibrating:
        v.assign(1.0)
    try:
        forward = inference_forward(vbm)
        for i in range(0, len(x), batch_size):
            forward(tf.constant(x[i:i + batch_size]))
    finally:
        for v in calibrating:
            v.assign(0.0)


def _cached_mode_vars(vbm, suffix: str) -> list:
    """``_mode_vars(vbm.model, suffix)``, found once per model (walking a model's weights costs ~6 ms,
    three times per candidate)."""
    cache = vbm.__dict__.setdefault("_tfmpq_mode_vars", {})
    if suffix not in cache:
        cache[suffix] = _mode_vars(vbm.model, suffix)
    return cache[suffix]


def _traced(vbm, training: bool):
    attr = "_tfmpq_forward_train" if training else "_tfmpq_forward_infer"
    fn = getattr(vbm, attr, None)
    if fn is None:
        model, mode = vbm.model, training

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
