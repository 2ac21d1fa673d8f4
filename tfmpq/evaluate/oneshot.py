"""The one-shot shared model of an evaluator (Shen et al., AAAI 2021; Bulat & Tzimiropoulos, ICCV 2021).

One variable-bit model is trained once for ``epochs`` epochs under sampled policies (the sandwich
rule, ``tfmpq.quantize.oneshot``); a candidate then costs setting its bits, re-estimating BN statistics
and activation ranges on a few training batches, and one validation pass. :class:`SharedModel` owns
that model: trained on first use, saved to and loaded from ``cache_dir``
(``oneshot-<fingerprint>.npz`` and ``.json``), shipped to worker processes, and restored after each
candidate to exactly what training left.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

import numpy as np

from tfmpq._keras import keras
from tfmpq.evaluate.config import EvaluatorConfig
from tfmpq.evaluate.data import EvalData, ends_in_probabilities, seed_everything
from tfmpq.evaluate.qat import make_optimizer
from tfmpq.quantize import VariableBitModel
from tfmpq.quantize import oneshot as _oneshot

ONESHOT_FILE = "oneshot"  # <cache_dir>/oneshot-<fingerprint>.npz (+ .json): the trained shared weights


class SharedModel:
    """The trained shared one-shot ``VariableBitModel`` of one evaluator.

    Args:
        model: the float tf_keras model.
        config: the evaluator's configuration (its one-shot options).
        seed: the evaluator's seed.
        loss: the training loss.
        cache_dir: where the trained weights are saved and loaded from; None keeps them in memory.
        signature: the evaluator's signature (a callable): the fingerprint of the saved file.
    """

    def __init__(self, model, config: EvaluatorConfig, *, seed: int, loss, cache_dir, signature: Callable[[], dict]):
        self.model = model
        self.config = config
        self.seed = seed
        self.loss = loss
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self._signature = signature
        #: how the shared weights came to be (``"trained"``, ``"loaded"`` from ``cache_dir``,
        #: ``"shipped"`` to a worker), the one-time training cost and its losses; None until first use.
        self.info: dict | None = None
        self.num_trainings = 0  # shared trainings run here (0 after a load)
        self.vbm = None  # the VariableBitModel, apart from the QAT search model
        self._snapshot = None

    def path(self) -> str | None:
        """``<cache_dir>/oneshot-<fingerprint>.npz``, where the shared weights are saved; None without
        ``cache_dir``. The fingerprint covers the model, its weights, the data and every option that
        changes the training (not ``calibration_batches``), so a changed problem never loads stale
        weights."""
        if self.cache_dir is None:
            return None
        # calibration_batches changes the scoring only, not the trained weights
        key = json.dumps({k: v for k, v in self._signature().items() if k not in ("num_params", "calibration_batches")},
                         sort_keys=True, default=str)
        return os.path.join(self.cache_dir, f"{ONESHOT_FILE}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz")

    def _new(self):
        c = self.config
        keras.utils.set_random_seed(self.seed)
        return VariableBitModel(self.model, per_channel=c.per_channel, symmetric=c.symmetric,
                                bn_freeze_step=c.bn_freeze_step, bn_fold=c.bn_fold)

    def load(self, values, info: dict) -> None:
        """Sets the shared one-shot model's variables to ``values`` (trained elsewhere: a file, the driver)."""
        vbm = self.vbm or self._new()
        variables = vbm.model.variables
        if len(values) != len(variables) or any(tuple(np.shape(a)) != tuple(v.shape) for a, v in zip(values, variables)):
            raise ValueError(
                f"The shared one-shot weights ({len(values)} arrays) do not fit this model's one-shot model "
                f"({len(variables)} variables): they were trained for another model."
            )
        for v, a in zip(variables, values):
            v.assign(a)
        self.vbm = vbm
        self._snapshot = None
        self.info = info

    def get(self, data: EvalData):
        """The trained shared one-shot ``VariableBitModel``: trained on first use (the one-time cost),
        or loaded from ``cache_dir`` when a previous run saved it."""
        if self.vbm is not None and self.info is not None:
            return self.vbm
        path = self.path()
        if path is not None and os.path.exists(path):
            with np.load(path) as f:
                values = [f[f"arr_{i}"] for i in range(len(f.files))]
            with open(path[:-4] + ".json") as f:
                info = json.load(f)
            self.load(values, dict(info, source="loaded", path=path))
            return self.vbm
        vbm = self._new()
        seed_everything(self.seed)
        c = self.config
        info = _oneshot.train_shared(
            vbm, data.train_data, epochs=c.epochs, optimizer=make_optimizer(c, c.shared_learning_rate),
            loss=self.loss,
            weight_choices=c.oneshot_bits, activation_choices=c.oneshot_activation_bits,
            num_random=c.num_random_policies, distill=c.distill,
            from_logits=not ends_in_probabilities(self.model), seed=self.seed,
        )
        self.num_trainings += 1
        info = dict(info, options=c.oneshot_options(), source="trained")
        if path is not None:
            self._save(vbm, path, info)
            info["path"] = path
        self.vbm = vbm
        self.info = info
        return vbm

    def _save(self, vbm, path: str, info: dict) -> None:
        os.makedirs(self.cache_dir, exist_ok=True)
        tmp = path[:-4] + ".tmp.npz"
        np.savez(tmp, *[v.numpy() for v in vbm.model.variables])
        with open(path[:-4] + ".json.tmp", "w") as f:
            json.dump(info, f, indent=1)
        os.replace(path[:-4] + ".json.tmp", path[:-4] + ".json")  # the .npz last: it marks a finished save
        os.replace(tmp, path)

    def score(self, policy, data: EvalData, *, batch_size: int, from_logits: bool):
        """Sets ``policy`` on the shared model, re-calibrates it, scores it; restores the shared state.

        Returns:
            ``(model, accuracy, info)``; the model holds the re-calibrated policy until the next candidate.
        """
        vbm = self.get(data)
        if self._snapshot is None:  # once per shared model (a load resets it)
            self._snapshot = _oneshot.restorer(vbm)
        seed_everything(self.seed, tensorflow=False)
        try:
            vbm.set_policy(policy)
            _oneshot.recalibrate(vbm, data.calib_x, batch_size)
            acc = data.accuracy(_oneshot.inference_forward(vbm), from_logits)
        finally:
            # the shared weights are exactly what training left, whatever the candidate did to them
            self._snapshot()
        # where this process's shared weights came from: "trained", "loaded" (cache_dir) or "shipped" (a worker)
        return vbm.model, acc, {"oneshot": True, "shared": self.info["source"]}
