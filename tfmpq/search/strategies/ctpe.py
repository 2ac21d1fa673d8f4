"""Clustered (k-means) TPE of Azizi et al. 2023 on the shared engine.

Azizi, Nazemi, Fayyazi and Pedram 2023, "Sensitivity-aware mixed-precision quantization and width
optimization of deep neural networks through cluster-based tree-structured Parzen estimation",
Algorithm 1, with the pure parts in :mod:`tfmpq.search.kmeans_tpe`:

1. ``analyze_hessian`` / ``create_search_space`` (lines 1-2, sec. III.A): per-parameter Hessian traces,
   k-means, each group's bits pruned to its cluster's subset (:func:`~tfmpq.search.kmeans_tpe.prune_bits`).
2. ``sample_randomly(space, n0)`` (lines 3-9): ``startup`` random configurations of the pruned space
   (generation 0, one batch: parallel executors score them at once).
3. Lines 10-20, one configuration per generation: k-means of the objective values into ``k``
   clusters, ``l(x)`` from ``C_1``, ``g(x)`` from ``C_k``, the next configuration ``argmax l / g``
   (Optuna's TPE, :func:`~tfmpq.search.kmeans_tpe.tpe_propose`); ``c <- c alpha`` and ``k`` grows
   (:func:`~tfmpq.search.kmeans_tpe.annealed_k`).
4. Line 21: the best configuration, here the engine's Deb-best (the most accurate within the budget).

Deviations from the paper, all deliberate:

* **No layer widths.** The paper searches bit-width and a width multiplier per layer (sec. III.A,
  footnote 1); tfmpq keeps the architecture, so only bit-widths are searched.
* **Weight bits only.** The paper gives a layer's weights and input activations the same bit-width;
  here activations stay at the space's ``activation_bits`` (8 by default), as for the ILP.
* **The budget is a hard constraint**, not a Lagrangian penalty (sec. III.C): costs are known without
  training, so a proposal over the budget is never trained; it is recorded as an undesirable
  configuration (it joins ``g(x)``, below every scored one) and TPE proposes again. Failed (diverged)
  candidates also join ``g(x)``. Proposals that repeat a scored configuration are drawn again (the
  engine would answer them from its cache, so they would add nothing); after
  ``max_tries`` draws a random unseen feasible configuration is taken, and the search ends early
  when the pruned space holds none.
* **The bit subsets per cluster** follow :func:`~tfmpq.search.kmeans_tpe.cluster_windows` (the paper
  gives one example), on ``log10`` of the traces by default (``scale``); when no configuration of the
  pruned space meets the budget, every subset is widened by the next lower bit-width until one does
  (the paper's example assumes a budget its subsets admit).
* **Annealing of k**: ``k_t = max(k, floor(1 / (c alpha^t)))``, our reading of Algorithm 1's
  ``c <- c alpha`` and sec. III.B's "after every few iterations, we increase k".
* **TPE details are Optuna's** (univariate, categorical bit-widths, 24 candidates from ``l``, prior
  weight 1) rather than HyperOpt's, into which the paper integrated its method.

Resume: the strategy state (proposals in order, the infeasible ones) is checkpointed each
generation and each proposal is a deterministic function of it, the journal's scores and the seed,
so a resumed run replays exactly; Optuna's own storage is not used.
"""
from __future__ import annotations

import itertools
import json
import math
from typing import Callable, Mapping, Sequence

import numpy as np

from tfmpq.search.kmeans_tpe import (
    DEFAULT_ALPHA, DEFAULT_C, DEFAULT_K, SCALES, TPEProposer, annealed_k, dual_threshold_split, prune_bits,
)
from tfmpq.search.strategies.base import Ask, Strategy, check_counts
from tfmpq.search.tables import normalise_tables, per_gene, sig, tables_json, weight_tables

#: Value given in ``g(x)`` to a failed candidate, and the base for infeasible proposals (below any accuracy).
FAILED_VALUE = -1.0
INFEASIBLE_VALUE = -2.0
#: Pruned spaces up to this size are enumerated to find a random unseen feasible configuration.
ENUMERATE_LIMIT = 100_000


def _proposal_seed(seed: int, iteration: int, attempt: int) -> int:
    """The TPE sampler's seed of one iteration: a fixed function of the run's seed and the iteration."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, iteration, attempt]).generate_state(1)[0])


class CTPE(Strategy):
    """k-means TPE (Azizi et al. 2023, Algorithm 1) under a linear budget, weight bits only.

    Args:
        sensitivity: per gene (free groups, in order) or ``{group name: value}``, the Hessian trace
            divided by the kernel's weights (``tfmpq.sensitivity(model, data, average=True)``).
        costs: per gene or per group, ``{bits: cost term}`` of the budget metric (see ``ILP``).
        budget: the largest allowed sum of cost terms.
        trials: configurations scored in all (n of Algorithm 1). Defaults to 40.
        startup: random configurations before TPE (n0); None: ``max(2, round(trials / 4))``
            (sec. IV.A: 40 of 160). Defaults to None.
        k: initial number of objective clusters, >= 3 (sec. III.B). Defaults to 4.
        c: Algorithm 1's ``c``. Defaults to 0.25.
        alpha: its decay per iteration. Defaults to 0.98.
        prune_clusters: clusters of the sensitivities (sec. III.A's example: 4). Defaults to 4.
        cluster_bits: bit subsets per sensitivity cluster, most sensitive first; None: the rule of
            ``cluster_windows``. Defaults to None.
        scale: ``"log"`` or ``"linear"`` sensitivities for the clustering. Defaults to "log".
        n_ei_candidates: candidates TPE draws from ``l(x)``. Defaults to 24.
        max_tries: TPE draws per generation before a random unseen configuration. Defaults to 32.
        accept: exact feasibility check of a chromosome (e.g. the metric against its target); not part
            of the resume signature. Defaults to None.
        seed: seeds the sensitivity k-means, the objective k-means and each iteration's TPE sampler
            (random draws come from the run's ``view.rng``). Defaults to 0.

    Raises:
        ValueError: invalid counts or options; at setup, a space with searched activations or one
            whose genes the tables do not cover, or a budget no configuration meets.
    """

    name = "ctpe"

    def __init__(self, sensitivity: Sequence[float], costs: Sequence[Mapping[int, float]], budget: float, *,
                 trials: int = 40, startup: int | None = None, k: int = DEFAULT_K, c: float = DEFAULT_C,
                 alpha: float = DEFAULT_ALPHA, prune_clusters: int = DEFAULT_K,
                 cluster_bits: Sequence[Sequence[int]] | None = None, scale: str = "log", n_ei_candidates: int = 24,
                 max_tries: int = 32, accept: Callable[[tuple], bool] | None = None, seed: int = 0):
        if startup is None and isinstance(trials, int) and not isinstance(trials, bool):
            startup = max(2, int(round(trials / 4)))
        check_counts(("trials", trials, 1), ("startup", startup, 1), ("k", k, 3), ("prune_clusters", prune_clusters, 1),
                     ("n_ei_candidates", n_ei_candidates, 1), ("max_tries", max_tries, 1))
        if startup > trials:
            raise ValueError(f"Invalid value for `startup`: expected at most `trials` ({trials}). Received: {startup}")
        if not 0 < c <= 1 or not 0 < alpha <= 1:
            raise ValueError(f"Invalid values for `c` / `alpha`: expected numbers in (0, 1]. Received: c={c!r}, "
                             f"alpha={alpha!r}")
        if scale not in SCALES:
            raise ValueError(f"Invalid value for `scale`: expected one of {SCALES}. Received: scale={scale!r}")
        self.sensitivity = {str(g): sig(v) for g, v in sensitivity.items()} if isinstance(sensitivity, Mapping) \
            else [sig(v) for v in sensitivity]
        self.costs = normalise_tables(costs, "costs")
        self.budget = sig(budget)
        self.trials = trials
        self.startup = startup
        self.generations = trials - startup
        self.k, self.c, self.alpha = k, float(c), float(alpha)
        self.prune_clusters = prune_clusters
        self.cluster_bits = None if cluster_bits is None else [sorted(int(b) for b in s) for s in cluster_bits]
        self.scale = scale
        self.n_ei_candidates = n_ei_candidates
        self.max_tries = max_tries
        self.accept = accept
        self.seed = int(seed)
        self.pruned: list[tuple[int, ...]] | None = None

    # -- setup: the pruned space (sec. III.A) ----------------------------------------------------
    def cost(self, genes: Sequence[int]) -> float:
        """The sum of the genes' cost terms (compare with ``self._budget``)."""
        return math.fsum(t[int(b)] for t, b in zip(self._costs, genes))

    def feasible(self, genes: Sequence[int]) -> bool:
        genes = tuple(int(b) for b in genes)
        return self.cost(genes) <= self._budget * (1 + 1e-12) + 1e-12 and (self.accept is None or self.accept(genes))

    def setup(self, view) -> None:
        space = view.space
        _, costs, constant = weight_tables(space, self.name, "clustered TPE here allocates weight bits only",
                                           self.costs)
        sens, _ = per_gene(self.sensitivity, space, "sensitivity")
        self._costs = costs
        self._budget = self.budget - constant
        pruned = prune_bits(sens, space.choices, self.prune_clusters, cluster_bits=self.cluster_bits,
                            scale=self.scale, seed=self.seed)
        self.widened = 0
        while math.fsum(min(costs[j][b] for b in p) for j, p in enumerate(pruned)) > self._budget:
            wider = []
            for allowed, p in zip(space.choices, pruned):
                lower = [b for b in allowed if b < min(p)]
                wider.append(tuple(sorted(set(p) | ({max(lower)} if lower else set()))))
            if wider == pruned:
                cheapest = math.fsum(min(co[b] for b in allowed) for co, allowed in zip(costs, space.choices))
                raise ValueError(f"Invalid budget for `ctpe`: no configuration of the space meets it (the cheapest "
                                 f"costs {cheapest:.6g} over the budget's {self._budget:.6g}).")
            pruned, self.widened = wider, self.widened + 1
        self.pruned = pruned

    def options(self) -> dict:
        return {"sensitivity": self.sensitivity, "costs": tables_json(self.costs),
                "budget": self.budget, "startup": self.startup, "k": self.k, "c": self.c, "alpha": self.alpha,
                "prune_clusters": self.prune_clusters, "cluster_bits": self.cluster_bits, "scale": self.scale,
                "n_ei_candidates": self.n_ei_candidates, "max_tries": self.max_tries, "seed": self.seed}

    # -- proposals -------------------------------------------------------------------------------
    def _random_unseen(self, view, seen: set, state: dict) -> tuple | None:
        """A random feasible configuration of the pruned space not seen yet (``view.rng``), or None."""
        size = math.prod(len(p) for p in self.pruned)
        if size <= ENUMERATE_LIMIT:
            pool = [x for x in itertools.product(*self.pruned) if x not in seen and self.feasible(x)]
            return view.rng.choice(pool) if pool else None
        for _ in range(50 * self.max_tries):
            x = tuple(view.rng.choice(p) for p in self.pruned)
            if x in seen:
                continue
            if self.feasible(x):
                return x
            seen.add(x)
            state["infeasible"].append([list(x), self.cost(x) - self._budget])
        return None

    def _seen(self, state: dict) -> set:
        return {tuple(t) for t in state["trials"]} | {tuple(x) for x, _ in state["infeasible"]}

    def start(self, view):
        """Algorithm 1 lines 3-9: ``startup`` random feasible configurations of the pruned space."""
        state = {"trials": [], "infeasible": [], "exhausted": False, "pruned": [list(p) for p in self.pruned],
                 "widened": self.widened}
        seen = self._seen(state)
        batch = []
        while len(batch) < self.startup:
            x = self._random_unseen(view, seen, state)
            if x is None:
                state["exhausted"] = True
                break
            batch.append(x)
            seen.add(x)
        if batch:
            yield Ask(batch, desc="ctpe start")
        state["trials"] = [list(x) for x in batch]
        return state

    def _observations(self, view, state: dict, iteration: int) -> tuple[list, list, int]:
        scored, failed = [], []
        for t in state["trials"]:
            cand = view.candidate(t)
            (scored if cand.ok else failed).append((tuple(t), float(cand.accuracy) if cand.ok else FAILED_VALUE))
        k = annealed_k(iteration, self.k, self.c, self.alpha)
        if not scored:
            return [], failed, k
        top, bottom = dual_threshold_split([v for _, v in scored], k, seed=self.seed)
        good = [scored[i] for i in top]
        bad = [scored[i] for i in bottom] + failed
        scale = max(abs(self._budget), 1e-12)
        bad += [(tuple(x), INFEASIBLE_VALUE - float(v) / scale) for x, v in state["infeasible"]]
        return good, bad, k

    def step(self, view, state: dict, generation: int):
        """Algorithm 1 lines 11-19: one TPE proposal from l(C_1) / g(C_k), scored."""
        state = json.loads(json.dumps(state))  # never mutate the checkpointed state
        iteration = generation - 1
        seen = self._seen(state)
        good, bad, k = self._observations(view, state, iteration)
        proposal = None
        if good:
            proposer = TPEProposer(self.pruned, good, bad, seed=_proposal_seed(self.seed, iteration, 0),
                                   n_ei_candidates=self.n_ei_candidates)
            for _ in range(self.max_tries):
                x = proposer.ask()
                if x in seen:
                    continue
                if not self.feasible(x):
                    violation = self.cost(x) - self._budget
                    state["infeasible"].append([list(x), violation])
                    proposer.add_bad(x, INFEASIBLE_VALUE - violation / max(abs(self._budget), 1e-12))
                    seen.add(x)
                    continue
                proposal = x
                break
        state["last"] = {"k": k, "l": len(good), "g": len(bad), "tpe": proposal is not None}
        if proposal is None:
            proposal = self._random_unseen(view, seen, state)
        if proposal is None:
            state["exhausted"] = True
            return state
        yield Ask([proposal], desc=f"ctpe {generation}")
        state["trials"].append(list(proposal))
        return state

    # -- reporting -------------------------------------------------------------------------------
    def population(self, state: dict) -> list:
        return [tuple(t) for t in state.get("trials", [])]

    def finished(self, view, state: dict) -> bool:
        return bool(state.get("exhausted"))

    def report(self, view, state: dict) -> dict:
        last = state.get("last", {})
        return {"ctpe_k": last.get("k"), "ctpe_l": last.get("l"), "ctpe_g": last.get("g"),
                "ctpe_from_tpe": last.get("tpe"), "ctpe_infeasible": len(state.get("infeasible", [])),
                "pruned_space_size": math.prod(len(p) for p in state.get("pruned", [[0]]))}

    def extras(self, view, state: dict) -> dict:
        """``pruned``: each weight gene's bit-widths after the sensitivity pruning (sec. III.A), by group (by
        ``"<group>/w<cluster>"`` in a channel-wise space)."""
        return {"pruned": dict(zip(view.space.weight_labels, (tuple(p) for p in state.get("pruned", []))))}
