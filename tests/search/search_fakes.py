"""Deterministic pure-Python evaluators for the search tests (no TensorFlow, milliseconds per call)."""
from __future__ import annotations

import math

from tfmpq.candidate import Candidate

PARAMS = (3000, 1200, 400)  # kernel parameters per group
SENSITIVITY = (0.6, 2.5, 0.3)  # how much each group's accuracy suffers at low bits


class FakeEvaluator:
    """accuracy = 0.97 - sum_i s_i / 2**b_i (weights) - 0.5 sum_i s_i / 4**a_i (activations);
    weight_bytes = sum_i params_i * b_i / 8; a pure function of the policy, like a seeded evaluation.

    Args:
        params / sensitivity: per group (len = number of groups).
        fail_when: a predicate on the policy; True -> the evaluator raises (a crashed candidate).
        nan_when: a predicate; True -> returns a NaN accuracy (a diverged candidate).
        interrupt_after: raise KeyboardInterrupt on this call number (a kill), once.
    """

    def __init__(self, params=PARAMS, sensitivity=SENSITIVITY, fail_when=None, nan_when=None, interrupt_after=None):
        self.params = params
        self.sensitivity = sensitivity
        self.fail_when = fail_when
        self.nan_when = nan_when
        self.interrupt_after = interrupt_after
        self.calls = 0
        self.evaluated = []

    def metrics(self, policy) -> dict:
        wb = sum(p * b / 8 for p, b in zip(self.params, policy.weight_bits))
        ops = sum(self.params)
        return {
            "float_weight_bytes": 4.0 * sum(self.params),
            "weight_bytes": float(wb),
            "avg_weight_bits": sum(p * b for p, b in zip(self.params, policy.weight_bits)) / sum(self.params),
            "bops": float(sum(p * w * a for p, w, a in zip(self.params, policy.weight_bits, policy.activation_bits))),
            "macs": ops,
            "avg_op_bits": math.sqrt(sum(p * w * a for p, w, a in zip(self.params, policy.weight_bits,
                                                                     policy.activation_bits)) / ops),
        }

    def accuracy(self, policy) -> float:
        acc = 0.97
        acc -= sum(s / 2 ** b for s, b in zip(self.sensitivity, policy.weight_bits))
        acc -= 0.5 * sum(s / 4 ** a for s, a in zip(self.sensitivity, policy.activation_bits))
        return max(0.0, acc)

    def evaluate(self, policy) -> Candidate:
        self.calls += 1
        if self.interrupt_after is not None and self.calls == self.interrupt_after:
            self.interrupt_after = None
            raise KeyboardInterrupt("simulated kill")
        self.evaluated.append(tuple(policy.weight_bits) + tuple(policy.activation_bits))
        if self.fail_when is not None and self.fail_when(policy):
            raise RuntimeError("simulated crash")
        acc = float("nan") if self.nan_when is not None and self.nan_when(policy) else self.accuracy(policy)
        return Candidate(policy, acc, self.metrics(policy), seconds=0.001)

    def signature(self) -> dict:
        return {"fake": list(self.params), "sensitivity": list(self.sensitivity)}


class DyingEvaluator(FakeEvaluator):
    """A FakeEvaluator whose worker process dies (``os._exit``, like a SIGKILL or an OOM kill) on
    chosen policies: on ``die_once`` the first time only (a marker file in ``marker_dir`` remembers it
    across processes), on ``die_always`` every time; on ``raise_on`` it raises RuntimeError. ``delay``
    seconds of sleep per evaluation make the workers overlap. ``hold=(journal, n)``: once the run's
    journal holds ``n`` lines, every evaluation waits (up to ``hold_timeout`` s) for a ``release`` file
    in ``marker_dir``, so a test can interrupt the run at a known point, however loaded the machine.
    Picklable, so executors can ship it to worker processes."""

    def __init__(self, marker_dir, die_once=(), die_always=(), raise_on=(), delay=0.0, hold=None,
                 hold_timeout=1800.0):
        super().__init__()
        self.marker_dir = str(marker_dir)
        self.die_once = {tuple(g) for g in die_once}
        self.die_always = {tuple(g) for g in die_always}
        self.raise_on = {tuple(g) for g in raise_on}
        self.delay = float(delay)
        self.hold = None if hold is None else (str(hold[0]), int(hold[1]))
        self.hold_timeout = float(hold_timeout)

    def held(self) -> bool:
        """Whether evaluations are being held (the journal reached the hold point)."""
        import os

        if self.hold is None or not os.path.exists(self.hold[0]):
            return False
        with open(self.hold[0], encoding="utf-8") as f:
            return sum(1 for _ in f) >= self.hold[1]

    def evaluate(self, policy) -> Candidate:
        import os
        import time

        genes = tuple(policy.weight_bits)
        if self.delay:
            time.sleep(self.delay)
        if self.held():
            release = os.path.join(self.marker_dir, "release")
            deadline = time.monotonic() + self.hold_timeout
            while not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.01)
        if genes in self.raise_on:
            raise RuntimeError(f"simulated crash on {genes}")
        if genes in self.die_always:
            os._exit(9)
        if genes in self.die_once:
            marker = os.path.join(self.marker_dir, "died-" + "-".join(map(str, genes)))
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(9)
        return super().evaluate(policy)
