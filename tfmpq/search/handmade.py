"""Policies a user writes by hand under a budget: the baselines a searched pick must not lose to (issue 24).

Faced with "the weights must fit in N bytes", a practitioner does not search; they take the widest uniform
policy and adjust it by rules of thumb the literature repeats (the survey of Rakka et al. 2022, sec. 3:
the first and last layers are the most sensitive; the largest layers hold most of the bytes):

* ``largest-1`` / ``largest-2``: every group at ``b`` bits but the largest, one or two bits lower;
* ``first-last-8``: the first and the last group at 8 bits, the others at ``b``;
* ``small-8``: the small groups (each under ``small_share`` of the weights: depthwise and first convolutions)
  at 8 bits, the largest one bit below the rest.

Each family's policy under a budget is its widest ``b`` that fits. A Hessian-guided allocation (HAWQ-V3's
ILP, ``tfmpq.search.ilp``) is the fifth baseline a bench adds; it needs TensorFlow, these do not.
"""
from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["handmade_baselines", "FAMILIES"]

FAMILIES = ("largest-1", "largest-2", "first-last-8", "small-8")


def handmade_baselines(space, params: Sequence[int], cost_of: Callable[[tuple], float],
                       small_share: float = 0.01) -> dict[str, Callable[[float], tuple | None]]:
    """The hand-made families of a space, each as ``budget -> chromosome`` (its widest policy that fits, or None).

    Args:
        space: a :class:`~tfmpq.search.SearchSpace` whose genes are weight bits (no activation genes).
        params: the weights of each of ``space.group_names``, in that order (``QuantGroup.params``).
        cost_of: a chromosome's cost (the metric the budget bounds).
        small_share: ``small-8`` keeps the groups holding less than this share of the weights at 8 bits.
            Defaults to 0.01.

    Returns:
        ``{family: f(budget) -> chromosome or None}`` for :data:`FAMILIES` (``first-last-8`` is left out where
        the space pins the first and last group: there it is uniform).

    Raises:
        ValueError: a space with activation genes, or ``params`` of another length than its groups.

    Example:
    >>> fams = handmade_baselines(space, [g.params for g in tfmpq.quantizable_groups(model)], cost)
    >>> fams["largest-1"](48_000)     # e.g. (4, 4, 4, 4, 4, 4, 4, 3)
    """
    if space.search_activations:
        raise ValueError("Invalid value for `space`: hand-made baselines set weight bits only; the space searches "
                         "activation bits too. Build it with search_activations=False.")
    if len(params) != len(space.group_names):
        raise ValueError(f"Invalid value for `params`: expected one count per group ({len(space.group_names)}). "
                         f"Received: {len(params)}.")
    by_name = dict(zip(space.group_names, params))
    free = [by_name[n] for n in space.free_groups]
    total = sum(free)
    largest = max(range(len(free)), key=lambda i: free[i])
    small = {i for i, p in enumerate(free) if p < small_share * total and i != largest}

    def member(b: int, rule: str) -> tuple:
        bits = [b] * len(free)
        if rule in ("largest-1", "largest-2", "small-8"):
            bits[largest] = b - (2 if rule == "largest-2" else 1)
        if rule == "first-last-8":
            bits[0] = bits[-1] = 8
        if rule == "small-8":
            for i in small:
                bits[i] = 8
        # a lowered width snaps down (never above what the rule asks), the others to the nearest allowed one
        return tuple(_at_most(space.choices[i], v) if v < b else space.nearest(i, v) for i, v in enumerate(bits))

    def family(rule: str) -> Callable[[float], tuple | None]:
        def widest_fitting(budget: float) -> tuple | None:
            for b in sorted(space.bits, reverse=True):
                genes = member(b, rule)
                if cost_of(genes) <= budget:
                    return genes
            return None
        return widest_fitting

    pinned_ends = space.group_names[0] not in space.free_groups and space.group_names[-1] not in space.free_groups
    return {rule: family(rule) for rule in FAMILIES if not (rule == "first-last-8" and pinned_ends)}


def _at_most(choices: Sequence[int], value: int) -> int:
    """The widest allowed width <= ``value``; the narrowest when none is."""
    below = [c for c in choices if c <= value]
    return max(below) if below else min(choices)
