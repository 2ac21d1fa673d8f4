"""BBPSO-Quantizer (Tmamna et al. 2024): the most accurate policy under a bit budget.

The problem (eq. 3): maximise accuracy(M_quantized) s.t. C(M_quantized) <= C_target, with C one of
``tfmpq.metrics.summary``'s ``avg_op_bits`` (eq. 11, the paper's), ``avg_weight_bits`` (eq. 10) or
``weight_bytes``. It runs on the shared :class:`~tfmpq.search.engine.Engine`: a particle's position is
a chromosome of the :class:`~tfmpq.search.SearchSpace` (eq. 4: integer bit-widths, weight genes then,
with ``search_activations=True``, activation genes for every group), the engine's cache is the memory
matrix MeM, its journal/checkpoint give resume, and ``view.better`` is Deb's rule (Algorithm 1).

Algorithm 2, mechanism by mechanism (each can be switched off for the ablation of Table 9):

* **Initialisation** (lines 2-9): LIGPI (sec. 4.3.1, eq. 5-6, ``init="ligpi"``) or uniform random
  positions (``init="random"``, plain BBPSO).
* **Position update** (line 12, eq. 7): each dimension, with probability 0.5, is drawn from
  ``N(0.5 (Pb_ij + Gb_j), |Pb_ij - Gb_j|)`` (std) and mapped to the nearest allowed bit-width;
  otherwise it keeps ``Pb_ij``.
* **Similarity screening** (lines 13-25, sec. 4.3.4): a position already in the memory is not
  evaluated again; its stored fitness is used. ``screening=True`` is the engine's cache.
  ``screening=False`` is the paper's variant without the memory check (Table 8, "-SCP"): every
  proposed position costs an evaluator call, including positions evaluated before. The stored
  (first) score of such a position is still the one the search uses, so the switch changes the
  evaluator calls (time) and never the search path. The repeats are asked of the engine
  (``Ask(repeat=...)``), so they run on the executor's workers and are journaled as repeat records
  (a resumed run does not pay the replayed generation's repeats twice); ``history.json`` counts them
  (``reevaluated``).
* **Pb update** (line 26) and **Gb update** (line 38): Deb's rule (``view.better``); ties keep
  the incumbent.
* **Local search process** (lines 28-37, sec. 4.3.5, ``local_search=True``): every ``gamma``
  iterations, each Pb gets ``R`` distinct random dimensions changed to another random allowed
  bit-width; the new position replaces Pb when Deb's rule prefers it.

Strategies never import TensorFlow: LIGPI takes the float kernels (NumPy) from the caller.
"""
from __future__ import annotations

import json
from typing import Mapping, Sequence

import numpy as np

from tfmpq.search.strategies.base import Ask, Strategy, check_counts
from tfmpq.search.importance import layer_importance

INITS = ("ligpi", "random")
#: How far LIGPI shifts a gene's expected bit level by its layer's importance (see ``_ligpi``).
LIGPI_SHIFT = 0.5
#: Resampling attempts to keep the initial swarm free of duplicates.
MAX_INIT_TRIES = 20


def eq7_continuous(pb: Sequence[float], gb: Sequence[float], np_rng: np.random.Generator,
                   keep_prob: float = 0.5) -> np.ndarray:
    """Eq. 7 before the mapping onto the bit set: the new position as floats.

    Each dimension ``j`` is, with probability ``1 - keep_prob``, drawn from a Gaussian with mean
    ``0.5 (pb_j + gb_j)`` and standard deviation ``|pb_j - gb_j|`` (bare-bones PSO, Kennedy 2003;
    Tmamna et al. 2024, eq. 2 and 7); otherwise it keeps ``pb_j``.

    Args:
        pb: the particle's personal best position.
        gb: the global best position.
        np_rng: a NumPy ``Generator`` (the engine's ``np_rng``: checkpointed, so resume is exact).
        keep_prob: probability a dimension keeps ``pb_j``. Defaults to 0.5 (eq. 7).

    Returns:
        A float array of the new position.
    """
    pb = np.asarray(pb, dtype=np.float64)
    gb = np.asarray(gb, dtype=np.float64)
    update = np_rng.random(pb.shape) >= keep_prob  # eq. 7: "if rand > 0.5" Gaussian, else keep Pb
    noise = np_rng.standard_normal(pb.shape)  # drawn for every dimension: a fixed number of draws
    moved = 0.5 * (pb + gb) + noise * np.abs(pb - gb)
    return np.where(update, moved, pb)


def eq7_update(space, pb: Sequence[int], gb: Sequence[int], np_rng: np.random.Generator) -> tuple[int, ...]:
    """Eq. 7 mapped to the nearest allowed bit-width of each gene (``SearchSpace.nearest``)."""
    x = eq7_continuous(pb, gb, np_rng)
    return tuple(space.nearest(j, float(v)) for j, v in enumerate(x))


class BBPSO(Strategy):
    """BBPSO-Quantizer (Tmamna et al. 2024, Algorithm 2) on the shared engine.

    Args:
        swarm: the swarm size N. Defaults to 15 (Table 4).
        iterations: the iterations T after initialisation. Defaults to 20 (Table 4).
        init: ``"ligpi"`` (sec. 4.3.1) or ``"random"``. Defaults to "ligpi".
        screening: skip positions already in the memory (sec. 4.3.4); False re-evaluates them (see
            the module docstring). Defaults to True.
        local_search: run the local search process every ``gamma`` iterations (sec. 4.3.5).
            Defaults to True.
        gamma: the LSP period in iterations (Alg. 2 line 28). Defaults to 5.
        R: dimensions the LSP changes per Pb (Alg. 2 lines 30-33). Defaults to 2.
        importance: per-group importance in [0, 1] (eq. 5) in space group order, or ``{group: value}``;
            overrides ``kernels``. Defaults to None.
        kernels: ``{group name: float kernel}`` (NumPy) for LIGPI's eq. 5-6. Defaults to None.
        kinds: ``{group name: layer class name}`` (depthwise kernels). Defaults to None.
        alpha, beta: eq. 5's normalisation range and scale (see :func:`layer_importance`).
            Defaults to 4.0 and 1.0.
        initial: positions that replace the last particles of the initial swarm (LIGPI's costliest
            levels), e.g. ILP allocations at budgets up to the target (``bbpso(seed_ilp=...)``).
            Defaults to ().

    Raises:
        ValueError: a size below 1, an unknown ``init``, ``gamma`` or ``R`` below 1.
    """

    name = "bbpso"

    def __init__(
        self,
        swarm: int = 15,
        iterations: int = 20,
        *,
        init: str = "ligpi",
        screening: bool = True,
        local_search: bool = True,
        gamma: int = 5,
        R: int = 2,
        importance: Sequence[float] | Mapping[str, float] | None = None,
        kernels: Mapping[str, np.ndarray] | None = None,
        kinds: Mapping[str, str] | None = None,
        alpha: float = 4.0,
        beta: float = 1.0,
        initial=(),
    ):
        check_counts(("swarm", swarm, 1), ("iterations", iterations, 0), ("gamma", gamma, 1), ("R", R, 1))
        if init not in INITS:
            raise ValueError(f"Invalid value for `init`: expected one of {INITS}. Received: init={init!r}")
        self.swarm = swarm
        self.generations = iterations
        self.init = init
        self.screening = bool(screening)
        self.local_search = bool(local_search)
        self.gamma = gamma
        self.R = R
        self._importance_arg = importance
        self.kernels = kernels
        self.kinds = kinds
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.importance: list[float] | None = None  # per free group, set in setup()
        self.initial = [tuple(int(b) for b in g) for g in initial][:swarm]

    # -- setup ---------------------------------------------------------------------------------
    def setup(self, view) -> None:
        if self.init != "ligpi":
            return
        groups = view.space.free_groups
        imp = self._importance_arg
        if imp is None and self.kernels is not None:
            missing = [g for g in groups if g not in self.kernels]
            if missing:
                raise ValueError(f"Invalid value for `kernels`: no kernel for groups {missing}. "
                                 f"Received keys {sorted(self.kernels)}.")
            kinds = [None if self.kinds is None else self.kinds.get(g) for g in groups]
            imp = layer_importance([self.kernels[g] for g in groups], kinds=kinds, alpha=self.alpha, beta=self.beta)
        if imp is None:
            raise ValueError(
                "init='ligpi' needs the layer importance: pass `importance=` or `kernels=` (the float model's "
                "kernels), or use init='random'."
            )
        if isinstance(imp, Mapping):
            imp = [imp[g] for g in groups]
        imp = [float(v) for v in imp]
        if len(imp) != len(groups):
            raise ValueError(
                f"Invalid value for `importance`: expected one value per free group ({len(groups)}: {groups}). "
                f"Received: {len(imp)} values."
            )
        self.importance = [round(v, 12) for v in imp]  # rounded: it is part of the resume signature

    def options(self) -> dict:
        return {
            "swarm": self.swarm, "init": self.init, "screening": self.screening,
            "local_search": self.local_search, "gamma": self.gamma, "R": self.R,
            "importance": self.importance, "keep_prob": 0.5,
            **({"initial": [list(g) for g in self.initial]} if self.initial else {}),
        }

    # -- memory (similarity screening, sec. 4.3.4) ---------------------------------------------
    def _score(self, positions: list[tuple], state: dict, memory: set, desc: str):
        """Asks for ``positions`` (a sub-generator: ``yield from``); the engine's cache is MeM
        (Alg. 2 lines 13-25).

        ``memory`` is the set of positions this run evaluated before this batch (it grows; it lives in
        the checkpointed state, so a resumed run sees the memory the uninterrupted run saw). With
        ``screening=False`` every position of the batch found there (or repeated in the batch) is
        asked again as a repeat: the engine pays and journals the evaluation, and its first score stays
        the one used.
        """
        seen_in_batch: set = set()
        repeats = []
        for key in positions:
            if key in memory or key in seen_in_batch:
                repeats.append(key)
            seen_in_batch.add(key)
        candidates = yield Ask(positions, desc=desc, repeat=() if self.screening else repeats)
        state["screened"] += len(repeats)
        if not self.screening:  # the "-SCP" variant: no memory check, the evaluation is paid again
            state["reevaluated"] += len(repeats)
        for key in positions:
            if key not in memory:
                memory.add(key)
                state["memory"].append(list(key))
        return candidates

    # -- initialisation (Alg. 2 lines 2-9) -----------------------------------------------------
    def _ligpi(self, view, level: float) -> tuple:
        """LIGPI (sec. 4.3.1): a position whose genes sit higher for more important layers.

        The paper says only that "important layers are more likely to be quantized with higher bit
        precision"; we make it concrete: particle ``i`` gets a level ``u_i`` (stratified over the
        swarm, so the swarm spans cheap to costly policies and some particles are feasible at any
        target), gene ``j`` of group ``g`` draws its bit index from
        ``Binomial(n_j - 1, clip(u_i + 0.5 (L_g - mean L), 0, 1))`` over its ``n_j`` sorted choices,
        with ``L_g`` the importance of eq. 5. Activation genes follow their group's importance too.
        """
        space, rng = view.space, view.np_rng
        index = {g: i for i, g in enumerate(space.free_groups)}  # a group's clusters share its importance
        imp = np.asarray(self.importance)
        shift = LIGPI_SHIFT * (imp - imp.mean())
        genes = []
        for j, choices in enumerate(space.choices):
            q = float(np.clip(level + shift[index[space.gene_groups[j]]], 0.0, 1.0))
            genes.append(choices[int(rng.binomial(len(choices) - 1, q))])
        return tuple(genes)

    def _initial_positions(self, view) -> list[tuple]:
        positions: list[tuple] = []
        taken: set = set()
        for i in range(self.swarm):
            for _ in range(MAX_INIT_TRIES):
                if self.init == "ligpi":
                    level = (i + float(view.np_rng.random())) / self.swarm  # stratified levels
                    x = self._ligpi(view, level)
                else:
                    x = view.space.random(view.rng)
                if x not in taken:
                    break
            positions.append(x)
            taken.add(x)
        if self.initial:  # seeds replace the last (costliest-level) particles, duplicates dropped
            seeds = list(dict.fromkeys(view.space.validate(g) for g in self.initial))
            keep = [p for p in positions[: self.swarm - len(seeds)] if p not in seeds]
            positions = keep + seeds
            tries = 0
            while len(positions) < self.swarm:  # a kept particle equalled a seed: draw a fresh one
                x, tries = view.space.random(view.rng), tries + 1
                if x not in positions or tries > MAX_INIT_TRIES * self.swarm:
                    positions.append(x)
        return positions

    def start(self, view):
        state = {"screened": 0, "reevaluated": 0, "memory": []}
        positions = self._initial_positions(view)
        candidates = yield from self._score(positions, state, set(), "init swarm")
        gbest = None  # Alg. 2 line 9: Gb by Deb's rule over the Pbs (ties: lowest index)
        for cand in candidates:
            if gbest is None or view.better(cand, gbest):
                gbest = cand
        state.update({
            "positions": [list(x) for x in positions],
            "pbest": [list(x) for x in positions],  # line 7: Pb_i <- X_i
            "gbest": list(gbest.genes),
            "iteration_screened": state["screened"], "iteration_reevaluated": state["reevaluated"],
        })
        return state

    # -- one iteration (Alg. 2 lines 11-38) ----------------------------------------------------
    def step(self, view, state: dict, generation: int):
        state = json.loads(json.dumps(state))  # never mutate the checkpointed state
        before_s, before_r = state["screened"], state["reevaluated"]
        space = view.space
        memory = {tuple(x) for x in state["memory"]}
        pbest = [tuple(p) for p in state["pbest"]]
        gbest = tuple(state["gbest"])
        # lines 11-12: every particle moves by eq. 7 around its Pb and the Gb of the last iteration
        positions = [eq7_update(space, pb, gbest, view.np_rng) for pb in pbest]
        candidates = yield from self._score(positions, state, memory, f"iter {generation}")
        for i, cand in enumerate(candidates):  # line 26: Pb_i by Deb's rule (Algorithm 1)
            if view.better(cand, view.candidate(pbest[i])):
                pbest[i] = positions[i]
        if self.local_search and generation % self.gamma == 0:  # lines 28-37
            trials = [self._perturb(view, pb) for pb in pbest]
            trial_cands = yield from self._score(trials, state, memory, f"iter {generation} LSP")
            for i, cand in enumerate(trial_cands):  # line 36: NewPb vs Pb_i by Deb's rule
                if view.better(cand, view.candidate(pbest[i])):
                    pbest[i] = trials[i]
        for pb in pbest:  # line 38: Gb by Deb's rule
            if view.better(view.candidate(pb), view.candidate(gbest)):
                gbest = pb
        state.update({
            "positions": [list(x) for x in positions],
            "pbest": [list(p) for p in pbest],
            "gbest": list(gbest),
            "iteration_screened": state["screened"] - before_s,
            "iteration_reevaluated": state["reevaluated"] - before_r,
        })
        return state

    def _perturb(self, view, pb: tuple) -> tuple:
        """Alg. 2 lines 29-33: R distinct random dimensions set to another random allowed value."""
        rng, space = view.rng, view.space
        movable = [j for j, c in enumerate(space.choices) if len(c) > 1]
        new = list(pb)
        for j in rng.sample(movable, min(self.R, len(movable))):
            new[j] = rng.choice([b for b in space.choices[j] if b != new[j]])
        return tuple(new)

    # -- reporting -----------------------------------------------------------------------------
    def population(self, state: dict) -> list:
        """The personal bests (the swarm's memory of good positions)."""
        return [tuple(p) for p in state.get("pbest", [])]

    def report(self, view, state: dict) -> dict:
        gb = view.candidate(state["gbest"])
        out = {
            "gbest_accuracy": gb.accuracy,
            "gbest_feasible": view.feasible(gb),
            "screened": state.get("iteration_screened", 0),
            "reevaluated": state.get("iteration_reevaluated", 0),
        }
        if view.constraint is not None:
            out["gbest_" + view.constraint.metric] = gb.metrics.get(view.constraint.metric)
        return out
