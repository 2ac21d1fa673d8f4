"""How a chosen policy is fine-tuned: one recipe for every side of a comparison.

A comparison of a searched policy with a uniform or a hand-made one is only fair when both are trained
the same way after the search (Šafář, sec. 2.2: "the Pareto front is fine-tuned"); and the recipe decides
what the comparison can see. The default was chosen on validation accuracy on ``zoo:dscnn_fmnist`` (README,
"The fine-tune recipe"; ``python -m bench.finetune_recipe``: 15,000 training and 6,000 validation images, a
policy with a 2-bit Dense and uniform 3-bit): the search's own scoring recipe (1 epoch at a constant 1e-4)
puts the 2-bit policy 8 pp below where 3 epochs of this one put it (83.2% -> 90.9%), uniform 3-bit 1.3 pp
(91.1% -> 92.4%). A peak rate of 1e-3 with a cosine decay beat 1e-4 and 3e-4 on both policies, distillation
from the float model added 0.5 pp to the 2-bit one at 3 epochs, and 5 or 8 epochs added no more than the
validation noise (0.2 pp and 0.5 pp; one standard deviation is 0.35 pp on 6,000 images).

This module is the recipe as data (TensorFlow-free: searches and reports read it); the Keras side that
applies it (the cosine schedule, the distillation targets and loss) is :mod:`tfmpq.training`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

__all__ = ["FinetuneRecipe", "SCHEDULES"]

SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class FinetuneRecipe:
    """The fine-tuning of a chosen policy (and of every policy it is compared with).

    Args:
        epochs: QAT epochs over the evaluator's whole training split. Defaults to 3.
        learning_rate: the peak learning rate; None uses the evaluator's ``learning_rate`` (a search
            candidate's, 1e-4 by default). Defaults to 1e-3.
        schedule: ``"cosine"`` (from ``learning_rate`` to 0 over all the steps: Loshchilov & Hutter 2017,
            eq. 5 without restarts) or ``"constant"`` (what a search candidate trains with). Defaults to
            "cosine".
        distill: knowledge distillation from the float model (Hinton et al. 2015, sec. 2): the loss is
            ``(1 - distill_weight) * CE(labels, student) + distill_weight * T^2 * CE(teacher_T, student_T)``
            with ``p_T = softmax(log p / T)``; the teacher's outputs on the training images are computed
            once. Defaults to True.
        distill_weight: the teacher's share of the loss, in [0, 1]. Defaults to 0.5.
        temperature: the softening temperature ``T`` (> 0). Defaults to 1.0.

    Raises:
        ValueError: an option outside its range, naming it.

    Example:
    >>> recipe = FinetuneRecipe(epochs=8)
    >>> FinetuneRecipe.from_dict(recipe.to_dict()) == recipe
    True
    """

    epochs: int = 3
    learning_rate: float | None = 1e-3
    schedule: str = "cosine"
    distill: bool = True
    distill_weight: float = 0.5
    temperature: float = 1.0

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"Invalid value for `epochs`: expected an integer >= 1. Received: epochs={self.epochs!r}")
        rate = self.learning_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                 or not 0 < rate < math.inf):
            raise ValueError(f"Invalid value for `learning_rate`: expected None or a positive finite number. "
                             f"Received: learning_rate={rate!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Invalid value for `schedule`: expected one of {SCHEDULES}. "
                             f"Received: schedule={self.schedule!r}")
        if not isinstance(self.distill, bool):
            raise ValueError(f"Invalid value for `distill`: expected True or False. Received: distill={self.distill!r}")
        w = self.distill_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
            raise ValueError(f"Invalid value for `distill_weight`: expected a number in [0, 1]. "
                             f"Received: distill_weight={w!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf:
            raise ValueError(f"Invalid value for `temperature`: expected a positive finite number. "
                             f"Received: temperature={t!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the run record and the resume key of a comparison)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FinetuneRecipe":
        """The recipe of :meth:`to_dict`; an unknown key is a ``ValueError`` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Invalid fine-tune recipe: unknown option(s) {unknown}. Expected some of {sorted(known)}.")
        return cls(**dict(data))

    def label(self) -> str:
        """A short description for tables: ``"5 epochs, cosine, distilled"``."""
        parts = [f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}", self.schedule]
        if self.learning_rate is not None:
            parts.append(f"peak lr {self.learning_rate:g}")
        if self.distill:
            parts.append("distilled" + (f" (T={self.temperature:g}, weight {self.distill_weight:g})"
                                        if (self.temperature, self.distill_weight) != (1.0, 0.5) else ""))
        return ", ".join(parts)
