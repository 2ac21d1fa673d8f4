"""Candidate: one scored policy, the unit a search journals, caches and ranks.

Pure Python (NumPy for JSON conversion): the search engine, the journal reader and ``tfmpq.report``
use it without TensorFlow; ``tfmpq.evaluate.Evaluator`` produces it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from tfmpq.policy import QuantPolicy

__all__ = ["Candidate", "jsonable"]


def jsonable(obj):
    """Numpy scalars/arrays and tuples -> plain JSON types (recursively)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


@dataclass
class Candidate:
    """One scored policy.

    Attributes:
        policy: the ``QuantPolicy`` that was scored.
        accuracy: validation accuracy in [0, 1]; None when the evaluation failed.
        metrics: ``tfmpq.metrics.summary(model, policy)`` (``weight_bytes``, ``bops``,
            ``avg_weight_bits``, ``avg_op_bits``, ``compression_ratio``, ...).
        seconds: wall-clock seconds the evaluation took (0 for a cache hit's original cost is kept).
        status: ``"ok"`` or ``"failed"`` (diverged to NaN, or the evaluation raised).
        error: why it failed, else None.
        genes: the search chromosome, when it came from a search; else None.
        info: extra per-evaluation data (e.g. ``val_accuracy`` per epoch).
    """

    policy: Any
    accuracy: float | None
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0
    status: str = "ok"
    error: str | None = None
    genes: tuple | None = None
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the candidate was scored (not failed)."""
        return self.status == "ok" and self.accuracy is not None and math.isfinite(self.accuracy)

    @property
    def weight_bytes(self) -> float | None:
        return self.metrics.get("weight_bytes")

    @property
    def bops(self) -> float | None:
        return self.metrics.get("bops")

    def to_json(self) -> dict:
        """A JSON-able dict (the policy as group names and bits)."""
        p = self.policy
        policy = None
        if p is not None:
            policy = p.to_dict() if hasattr(p, "to_dict") else {
                "groups": list(p.group_names),
                "weight_bits": list(p.weight_bits),
                "activation_bits": list(p.activation_bits),
            }
        return jsonable(
            {
                "genes": None if self.genes is None else list(self.genes),
                "policy": policy,
                "accuracy": self.accuracy,
                "metrics": {k: v for k, v in self.metrics.items()},
                "seconds": self.seconds,
                "status": self.status,
                "error": self.error,
                "info": self.info,
            }
        )

    @classmethod
    def from_json(cls, data: Mapping, policy=None) -> "Candidate":
        """Inverse of :meth:`to_json`; ``policy`` replaces the stored one (e.g. re-decoded from genes)."""
        if policy is None and data.get("policy") is not None:
            policy = QuantPolicy.from_dict(data["policy"])
        return cls(
            policy=policy,
            accuracy=data.get("accuracy"),
            metrics=dict(data.get("metrics") or {}),
            seconds=float(data.get("seconds") or 0.0),
            status=data.get("status", "ok"),
            error=data.get("error"),
            genes=None if data.get("genes") is None else tuple(int(g) for g in data["genes"]),
            info=dict(data.get("info") or {}),
        )

    def __repr__(self) -> str:
        acc = "failed" if not self.ok else f"{self.accuracy:.4f}"
        bits = getattr(self.policy, "weight_bits", None)
        return f"Candidate(weight_bits={bits}, accuracy={acc}, weight_bytes={self.weight_bytes})"
