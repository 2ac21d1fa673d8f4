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
import math
from typing import Mapping, Sequence

import numpy as np

from tfmpq.convert import as_tf_keras
from tfmpq.metrics import COST_METRICS
from tfmpq.policy import QUANT_BITS
from tfmpq.search.strategies.base import Ask, Strategy
from tfmpq.search.strategies.importance import kernels_of, kinds_of, layer_importance

INITS = ("ligpi", "random")
#: Constrained metrics: ``tfmpq.metrics.COST_METRICS`` (the flash ones are the weights as
#: ``export_tflite(packed="auto" | "int4" | "lut")`` stores them).
BUDGETS = COST_METRICS
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
        for arg, value, low in (("swarm", swarm, 1), ("iterations", iterations, 0), ("gamma", gamma, 1), ("R", R, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Invalid value for `{arg}`: expected an integer >= {low}. Received: {arg}={value!r}")
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
        k = len(space.free_groups)
        imp = np.asarray(self.importance)
        shift = LIGPI_SHIFT * (imp - imp.mean())
        genes = []
        for j, choices in enumerate(space.choices):
            q = float(np.clip(level + shift[j % k], 0.0, 1.0))
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


# -- the user-facing function ----------------------------------------------------------------------
def budget_report(candidate, float_accuracy: float | None) -> dict:
    """Sec. 5.3's metrics of one candidate: accuracy, delta accuracy vs. float (eq. 8), compression
    ratio (eq. 9: 32 / average weight bits, eq. 10), size ratio, average operation bit-width (eq. 11)."""
    m = candidate.metrics
    acc = candidate.accuracy
    return {
        "accuracy": acc,
        "float_accuracy": float_accuracy,
        # eq. 8: delta accuracy = accuracy_quantized - accuracy_original
        "delta_accuracy": None if acc is None or float_accuracy is None else acc - float_accuracy,
        "compression_ratio_eq9": m.get("compression_ratio_eq9"),  # eq. 9
        "compression_ratio": m.get("compression_ratio"),  # float bytes / quantized bytes (biases, scales)
        "avg_weight_bits": m.get("avg_weight_bits"),  # eq. 10
        "avg_op_bits": m.get("avg_op_bits"),  # eq. 11
        "weight_bytes": m.get("weight_bytes"),
        "flash_bytes": m.get("flash_bytes"),
    }


def run_constrained(strategy, model, train, val, *, budget, target, evaluation, epochs, run_dir, resume,
                    seed, evaluator, bits, search_activations, verbose, float_accuracy=None, space=None,
                    **kwargs):
    """Shared by :func:`bbpso` and the GA baseline: eq. 3 on the engine, then sec. 5.3's report.

    Returns:
        The engine's ``Result`` with ``result.report`` (see :func:`budget_report`) and
        ``result.float_accuracy``; ``best.json`` additionally holds the report.
    """
    from tfmpq.search import make_space, run  # late: tfmpq.search re-exports this module
    from tfmpq.search.constraints import Constraint

    if budget not in BUDGETS:
        raise ValueError(f"Invalid value for `budget`: expected one of {BUDGETS}. Received: budget={budget!r}")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target <= 0:
        raise ValueError(f"Invalid value for `target`: expected a number > 0 (the budget on `{budget}`). "
                         f"Received: target={target!r}")
    model = as_tf_keras(model)  # a Keras 3 model: converted once, shared by the space and the evaluator
    base_model = model if model is not None else getattr(evaluator, "model", None)
    if space is None:
        space = make_space(base_model, evaluator=evaluator, bits=bits, search_activations=search_activations,
                           **{k: kwargs.pop(k) for k in ("activation_bits", "activation_choices", "overrides", "pinned",
                                                   "pin_first_last")
                              if k in kwargs})
    if isinstance(strategy, BBPSO) and strategy.init == "ligpi" and strategy._importance_arg is None \
            and strategy.kernels is None:
        if base_model is None:
            raise ValueError("init='ligpi' needs the float model's kernels: pass `model=` (or an evaluator with "
                             "`.model`), `kernels=`, or use init='random'.")
        strategy.kernels = kernels_of(base_model, space.free_groups)
        strategy.kinds = dict(zip(space.free_groups, kinds_of(base_model, space.free_groups)))
    result = run(strategy, model, train, val, evaluation=evaluation, epochs=epochs, space=space,
                 evaluator=evaluator, objectives=("accuracy", budget), constraint=Constraint(budget, float(target)),
                 run_dir=run_dir, resume=resume, seed=seed, verbose=verbose, **kwargs)
    if float_accuracy is None and callable(getattr(result.evaluator, "float_accuracy", None)):
        float_accuracy = result.evaluator.float_accuracy()
    result.float_accuracy = float_accuracy
    result.report = None if result.best is None else budget_report(result.best, float_accuracy)
    if result.report is not None:
        result.report["feasible"] = result.feasible(result.best)
        result.report["budget"] = {"metric": budget, "target": float(target)}
        result.save()  # best.json now holds the report too
        if verbose:
            r = result.report
            delta = "" if r["delta_accuracy"] is None else f" ({100 * r['delta_accuracy']:+.2f} pp vs. float)"
            acc = "failed" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
            print(f"{strategy.name} best under {budget} <= {target}: accuracy {acc}{delta}, "
                  f"compression ratio (eq. 9) {_fmt(r['compression_ratio_eq9'], '.2f')}, avg op bits (eq. 11) "
                  f"{_fmt(r['avg_op_bits'], '.3f')}, avg weight bits {_fmt(r['avg_weight_bits'], '.3f')}"
                  + ("" if r["feasible"] else " [INFEASIBLE: no feasible policy seen]"))
    return result


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def bbpso(
    model=None,
    train=None,
    val=None,
    *,
    budget: str = "avg_op_bits",
    target: float = 4.0,
    swarm: int = 15,
    iterations: int = 20,
    evaluation: str = "qat",
    epochs: int = 2,
    run_dir=None,
    resume: bool = False,
    seed: int = 0,
    evaluator=None,
    init: str = "ligpi",
    screening: bool = True,
    local_search: bool = True,
    gamma: int = 5,
    R: int = 2,
    search_activations: bool = True,
    bits: Sequence[int] = QUANT_BITS,
    verbose: int = 1,
    kernels: Mapping[str, np.ndarray] | None = None,
    importance=None,
    float_accuracy: float | None = None,
    seed_ilp: int = 0,
    sensitivity=None,
    **kwargs,
):
    """BBPSO-Quantizer (Tmamna et al. 2024): the most accurate mixed-precision policy with ``budget <= target``.

    Args:
        model: the trained float Keras model.
        train: training data ``(x, y)`` or a batched ``tf.data.Dataset``.
        val: validation data, same forms.
        budget: the constrained metric: ``"avg_op_bits"`` (eq. 11), ``"avg_weight_bits"`` (eq. 10),
            ``"weight_bytes"``, ``"bops"``, or ``"flash_bytes"`` (``"flash_bytes_int4"``,
            ``"flash_bytes_lut"``): the weights as ``export_tflite(packed="auto")`` (``"int4"``,
            ``"lut"``) writes them, e.g. ``budget="flash_bytes", target=64 * 1024`` for the most
            accurate model whose weights fit in 64 KiB of flash. Defaults to "avg_op_bits".
        target: the budget, e.g. 4.0 average bits or a byte count. Defaults to 4.0.
        swarm: swarm size N (Table 4). Defaults to 15.
        iterations: iterations T (Table 4). Defaults to 20.
        evaluation: ``"qat"`` (the paper: fine-tune each particle, then score) or ``"ptq"``.
            Defaults to "qat".
        epochs: QAT epochs per particle (Table 4: ep_eval = 2). Defaults to 2.
        run_dir: run directory (journal, checkpoint, best.json, convergence.png). Defaults to None.
        resume: continue the run in ``run_dir``. Defaults to False.
        seed: seeds the search and the evaluator. Defaults to 0.
        evaluator: a custom evaluator (``evaluate(policy) -> Candidate``). Defaults to None.
        init: ``"ligpi"`` (eq. 5-6) or ``"random"`` (Table 9's "-IN" variant). Defaults to "ligpi".
        screening: similarity screening (sec. 4.3.4); False re-evaluates remembered positions.
            Defaults to True.
        local_search: the local search process (sec. 4.3.5; False: Table 9's "-LSP"). Defaults to True.
        gamma: LSP period in iterations. Defaults to 5.
        R: dimensions changed by the LSP. Defaults to 2.
        search_activations: a position holds weight and activation bits of every group (Table 5);
            False keeps activations at ``activation_bits`` (8). Defaults to True.
        bits: the candidate bit-widths (16/32 = float). Defaults to ``(2, ..., 8)``.
        verbose: 0 silent, 1 a line per iteration. Defaults to 1.
        kernels: ``{group: float kernel}`` for LIGPI; None reads them from ``model``. Defaults to None.
        importance: per-group importance overriding eq. 5-6. Defaults to None.
        float_accuracy: the float model's validation accuracy for eq. 8; None computes it from
            ``model`` and ``val`` arrays. Defaults to None.
        seed_ilp: put this many ILP allocations into the initial swarm, replacing the last particles
            (Hessian traces of the float model on ``train``, then ``tfmpq.search.ilp``'s Omega-optimal
            allocation at budgets spread evenly from the cheapest policy up to ``target``; with
            searched activations, the weights are allocated with 8-bit activations). ``budget`` must be
            linear (not ``flash_bytes``). 0 for none. Defaults to 0.
        sensitivity: precomputed traces for ``seed_ilp``. Defaults to None.
        **kwargs: other arguments of ``tfmpq.search.run`` (``space``, ``pinned``, ``pin_first_last``,
            ``activation_bits``, ``overwrite``, ``batch_size``, ``learning_rate``, ...).

    Returns:
        A ``Result``: ``best`` (the Deb-best candidate: the most accurate feasible one when any was
        seen), ``report`` (sec. 5.3: accuracy, ``delta_accuracy`` eq. 8, ``compression_ratio_eq9``,
        ``avg_op_bits`` eq. 11), ``history``, ``finetune()``, ``export()``.

    Raises:
        ValueError: an unknown budget, a non-positive target, invalid sizes or switches.

    Example:
    >>> result = bbpso(model, (x_tr, y_tr), (x_val, y_val), target=4.0, evaluation="ptq",
    ...                swarm=8, iterations=5, run_dir="runs/bbpso4")
    >>> result.best.genes, result.report["delta_accuracy"], result.report["compression_ratio_eq9"]
    """
    initial = ()
    if seed_ilp:
        from tfmpq.search.strategies.ilp import seeds_for

        initial, evaluator, kwargs["space"] = seeds_for(
            BBPSO.name, model, train, val, count=seed_ilp, metric=budget, high=target, run_dir=run_dir,
            resume=resume, evaluator=evaluator, evaluation=evaluation, epochs=epochs, seed=seed, bits=bits,
            search_activations=search_activations, kwargs=kwargs, sensitivity=sensitivity)
    strategy = BBPSO(swarm, iterations, init=init, screening=screening, local_search=local_search,
                     gamma=gamma, R=R, importance=importance, kernels=kernels, initial=initial)
    return run_constrained(strategy, model, train, val, budget=budget, target=target, evaluation=evaluation,
                           epochs=epochs, run_dir=run_dir, resume=resume, seed=seed, evaluator=evaluator,
                           bits=bits, search_activations=search_activations, verbose=verbose,
                           float_accuracy=float_accuracy, **kwargs)


def plain_bbpso(model=None, train=None, val=None, **kwargs):
    """Plain BBPSO with Deb's rule (Table 10's "BBPSO"): random initialisation, no local search.

    Args:
        model, train, val, **kwargs: as in :func:`bbpso` (``init`` and ``local_search`` are fixed).

    Returns:
        A ``Result`` as :func:`bbpso`.
    """
    return bbpso(model, train, val, **{**kwargs, "init": "random", "local_search": False})
