"""Sensitivity + integer linear programming (HAWQ-V3) as a search strategy, and the glue it shares.

Yao et al. 2021 (HAWQ-V3, sec. 3.4) allocate bits in seconds: the Hessian-trace cost table
``Omega_g(b)`` (``tfmpq.hessian``) is minimised under a linear budget by an ILP
(:func:`tfmpq.search.allocation.solve_allocation`). As a strategy on the shared engine,
:class:`ILP` scores the optimal allocation and the next-best ones with the evaluator (generation 0:
the ``solutions`` best; each further generation: the next ``solutions``), so the engine's cache,
journal, resume and executors apply, and ``Result.best`` is the most accurate of them on validation
within the budget.

The tables are computed once by :func:`ilp` (the Hessian traces need TensorFlow, the strategy does
not) and stored in the run's signature (``run.json``): a resumed run reads them back instead of
estimating the traces again, and a resume with other tables is refused.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

from tfmpq.convert import as_tf_keras
from tfmpq.search.allocation import LINEAR_BUDGETS, linear_budget, separable_costs, solve_allocation
from tfmpq.search.strategies.base import Ask, Strategy

SENSITIVITY_FILE = "sensitivity.json"


def _sig(value: float) -> float:
    """12 significant digits: what the run signature stores (JSON-stable across machines' last bits)."""
    return float(f"{float(value):.12g}")


def normalise_tables(tables, what: str):
    """Tables as given, values at 12 significant digits: a list (one per gene) or ``{group: table}``."""
    if isinstance(tables, Mapping):
        out = {str(g): {int(b): _sig(v) for b, v in dict(t).items()} for g, t in tables.items()}
    else:
        out = [{int(b): _sig(v) for b, v in dict(t).items()} for t in tables]
    if not out:
        raise ValueError(f"Invalid value for `{what}`: expected one table per gene or group. Received: none.")
    return out


def tables_json(tables):
    """JSON form of :func:`normalise_tables`'s result (bit-width keys as strings)."""
    if isinstance(tables, dict):
        return {g: {str(b): v for b, v in t.items()} for g, t in tables.items()}
    return [{str(b): v for b, v in t.items()} for t in tables]


def per_gene(tables, space, what: str, *, pinned_constant: bool = False) -> tuple[list, float]:
    """The tables of the space's genes, and (``pinned_constant``) the pinned groups' summed terms.

    Args:
        tables: a list with one entry per gene, or ``{group name: entry}`` covering every group (the
            pinned ones too when ``pinned_constant``).
        space: the ``SearchSpace`` (weight genes of the free groups).
        what: the argument's name for errors.
        pinned_constant: add each pinned group's entry at its pinned bits to the returned constant.

    Returns:
        ``(entries per gene, constant)``.

    Raises:
        ValueError: a missing group or a list of the wrong length.
    """
    if isinstance(tables, dict):
        needed = list(space.free_groups) + (list(space.pinned) if pinned_constant else [])
        missing = [g for g in needed if g not in tables]
        if missing:
            raise ValueError(f"Invalid value for `{what}`: no entry for groups {missing}. Received keys "
                             f"{sorted(tables)}.")
        constant = math.fsum(tables[g][space.pinned[g][0]] for g in space.pinned) if pinned_constant else 0.0
        return [tables[g] for g in space.free_groups], constant
    if len(tables) != space.num_genes:
        raise ValueError(f"Invalid value for `{what}`: expected one entry per gene ({space.num_genes}: "
                         f"{space.gene_names}). Received: {len(tables)}.")
    return list(tables), 0.0


class ILP(Strategy):
    """Omega-optimal allocations under a linear budget, scored best first (HAWQ-V3 sec. 3.4).

    Args:
        omega: ``{bits: Omega_g(bits)}`` per gene of the space (free groups' weight bits, in order), or
            ``{group name: table}``.
        costs: ``{bits: cost term}`` per gene, or ``{group name: table}`` for every group (pinned groups
            count at their pinned bits): the budget metric is ``constant + sum of terms``.
        budget: the largest allowed sum of cost terms (the target minus the constant).
        solutions: allocations scored per generation: the optimum and the next-best. Defaults to 4.
        generations: further generations, each scoring the next ``solutions``. Defaults to 0.
        accept: an exact check of an allocation (e.g. the metric against its target); allocations it
            refuses are skipped. Not part of the resume signature. Defaults to None.

    Raises:
        ValueError: empty or inconsistent tables, ``solutions < 1``; at setup, a space whose
            activation bits are searched or whose genes the tables do not cover.
    """

    name = "ilp"

    def __init__(self, omega: Sequence[Mapping[int, float]], costs: Sequence[Mapping[int, float]], budget: float, *,
                 solutions: int = 4, generations: int = 0, accept: Callable[[tuple], bool] | None = None):
        for arg, value, low in (("solutions", solutions, 1), ("generations", generations, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Invalid value for `{arg}`: expected an integer >= {low}. Received: {arg}={value!r}")
        self.omega = normalise_tables(omega, "omega")
        self.costs = normalise_tables(costs, "costs")
        self.budget = _sig(budget)
        self.solutions = solutions
        self.generations = generations
        self.accept = accept

    def setup(self, view) -> None:
        space = view.space
        if space.search_activations:
            raise ValueError("Invalid search space for `ilp`: activation bits are searched, which makes BOPs a product "
                             "of two choices; the ILP allocates weight bits only (search_activations=False).")
        omega, _ = per_gene(self.omega, space, "omega")
        costs, constant = per_gene(self.costs, space, "costs", pinned_constant=True)
        for name, allowed, om, co in zip(space.gene_names, space.choices, omega, costs):
            missing = [b for b in allowed if b not in om or b not in co]
            if missing:
                raise ValueError(f"Invalid tables for gene `{name}`: no Omega or cost for bit-widths {missing}.")
        # the tables restricted to what the space allows
        self._omega = [{b: om[b] for b in allowed} for allowed, om in zip(space.choices, omega)]
        self._costs = [{b: co[b] for b in allowed} for allowed, co in zip(space.choices, costs)]
        self._budget = self.budget - constant

    def options(self) -> dict:
        return {"omega": tables_json(self.omega), "costs": tables_json(self.costs), "budget": self.budget,
                "solutions": self.solutions}

    def _next(self, view, state: dict):
        """Asks for the next ``solutions`` allocations (those already scored excluded); returns the state."""
        done = [tuple(s) for s in state.get("solutions", [])]
        found = solve_allocation(self._omega, self._costs, self._budget, num_solutions=self.solutions,
                                 exclude=done, accept=self.accept)
        if found:
            yield Ask([a.bits for a in found], desc=f"ilp {view.generation}")
        return {
            "solutions": [list(s) for s in done] + [list(a.bits) for a in found],
            "objectives": list(state.get("objectives", [])) + [a.objective for a in found],
            "budget_costs": list(state.get("budget_costs", [])) + [a.cost for a in found],
            "exhausted": len(found) < self.solutions,
        }

    def start(self, view):
        return (yield from self._next(view, {}))

    def step(self, view, state: dict, generation: int):
        return (yield from self._next(view, state))

    def population(self, state: dict) -> list:
        return [tuple(s) for s in state.get("solutions", [])]

    def finished(self, view, state: dict) -> bool:
        return bool(state.get("exhausted"))

    def report(self, view, state: dict) -> dict:
        obj = state.get("objectives") or [None]
        return {"ilp_solutions": len(state.get("solutions", [])), "ilp_best_objective": obj[0]}


# -- glue shared by the sensitivity-guided searches (ilp, ctpe, seeded nsga2 / bbpso) ----------------
def evaluator_and_space(model, train, val, *, evaluator, evaluation, epochs, seed, bits, search_activations,
                        kwargs: dict, run_dir=None):
    """The evaluator and search space ``tfmpq.search.run`` would build (pops their options off ``kwargs``)."""
    from tfmpq.search import EVALUATOR_OPTIONS, build_evaluator, make_space

    if evaluator is None and (model is None or train is None or val is None):
        raise ValueError(
            "Invalid arguments: pass `model`, `train` and `val` (or an `evaluator=`). "
            f"Received: model={'set' if model is not None else None}, "
            f"train={'set' if train is not None else None}, val={'set' if val is not None else None}."
        )
    space = kwargs.pop("space", None)
    if space is None:
        space = make_space(model, evaluator=evaluator, bits=bits, search_activations=search_activations,
                           **{k: kwargs.pop(k) for k in ("activation_bits", "activation_choices", "overrides", "pinned",
                                                         "pin_first_last") if k in kwargs})
    if evaluator is None:
        opts = {k: kwargs.pop(k) for k in EVALUATOR_OPTIONS if k in kwargs}
        evaluator = build_evaluator(model, train, val, space=space, evaluation=evaluation, epochs=epochs, seed=seed,
                                    run_dir=run_dir, **opts)
    return evaluator, space


def budget_tables(evaluator, space, budget: str, target: float) -> tuple[list[dict], float, Callable[[tuple], bool]]:
    """The per-gene cost terms of ``budget`` on ``space``, the bound on their sum, and the exact check.

    Costs come from ``evaluator.metrics`` (``tfmpq.metrics.summary``: the very formulas the engine's
    constraint uses), read off one gene at a time and verified to add up
    (:func:`tfmpq.search.allocation.separable_costs`); ``avg_op_bits <= T`` is ``bops <= T^2 MACs``.

    Returns:
        ``(tables, bound, accept)``: ``sum_j tables[j][x_j] <= bound`` is the budget, ``accept(x)``
        checks ``metrics[budget] <= target`` exactly.

    Raises:
        ValueError: a budget that is not linear in the space's genes, or that no chromosome meets.
    """
    if budget not in LINEAR_BUDGETS:
        raise ValueError(f"Invalid value for `budget`: expected one of {LINEAR_BUDGETS} (linear in each group's "
                         f"bits). Received: budget={budget!r}")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target <= 0:
        raise ValueError(f"Invalid value for `target`: expected a number > 0 (the bound on `{budget}`). "
                         f"Received: target={target!r}")
    if not callable(getattr(evaluator, "metrics", None)):
        raise TypeError(f"The evaluator {type(evaluator).__name__} has no `metrics(policy)`: the budget's costs "
                        "cannot be computed.")
    cache: dict[tuple, dict] = {}

    def metrics(genes: tuple) -> dict:
        if genes not in cache:
            cache[genes] = evaluator.metrics(space.decode(genes))
        return cache[genes]

    first = tuple(c[0] for c in space.choices)
    metric, bound = linear_budget(budget, target, metrics(first).get("macs"))
    constant, tables = separable_costs(lambda g: metrics(tuple(g))[metric], space.choices, name=budget)
    return tables, bound - constant, lambda genes: float(metrics(tuple(genes))[budget]) <= float(target)


def stored_options(run_dir, resume: bool, name: str) -> dict | None:
    """The strategy options in ``run_dir/run.json`` of a run to resume (its tables), else None."""
    if not resume or run_dir is None:
        return None
    import os

    from tfmpq.search.store import RUN, read_json

    path = os.path.join(os.fspath(run_dir), RUN)
    if not os.path.exists(path):
        return None
    found = read_json(path)
    if not isinstance(found, dict) or found.get("strategy") != name:
        return None  # the engine refuses the resume with a clear message
    return found.get("options")


def traces_for(model, train, *, sensitivity, sensitivity_data, num_probes: int, num_samples, seed: int):
    """The Hessian traces (a ``tfmpq.hessian.TraceEstimate``, or ``sensitivity`` if given) of ``model``."""
    if sensitivity is not None:
        return sensitivity
    if model is None:
        raise ValueError("Invalid arguments: the Hessian sensitivity needs the float `model` (or pass `sensitivity=`).")
    data = sensitivity_data if sensitivity_data is not None else train
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError("Invalid value for `sensitivity_data`: expected (x, y) arrays to estimate the Hessian traces "
                         "on (the default is `train`, which is not a pair of arrays here).")
    from tfmpq.hessian import hessian_trace  # TensorFlow work; the strategies themselves stay TF-free

    return hessian_trace(model, data, num_probes=num_probes, num_samples=num_samples, seed=seed)


def _trace_dict(traces) -> tuple[dict, dict]:
    """``(trace, std_error)`` dicts from a TraceEstimate or a plain ``{group: trace}`` mapping."""
    if hasattr(traces, "trace"):
        return dict(traces.trace), dict(traces.std_error)
    return {k: float(v) for k, v in dict(traces).items()}, {}


def omega_tables(model, space, traces, *, per_channel: bool = True, symmetric: bool = True) -> list[dict]:
    """Omega per gene of ``space`` (``tfmpq.hessian.omega_table`` of the free groups)."""
    from tfmpq.hessian import omega_table

    trace, _ = _trace_dict(traces)
    bits = sorted({b for c in space.choices for b in c})
    table = omega_table(model, trace, bits=bits, per_channel=per_channel, symmetric=symmetric)
    return [table[g] for g in space.free_groups]


def write_sensitivity(result, traces, extra: dict | None = None) -> None:
    """``run_dir/sensitivity.json``: the traces the search used (and their standard errors)."""
    if result.run_dir is None or traces is None:
        return
    from tfmpq._io import write_json_atomic

    trace, se = _trace_dict(traces)
    write_json_atomic(result.run_dir / SENSITIVITY_FILE, {"trace": trace, "std_error": se, **(extra or {})})


def weight_space(space):
    """The weight genes of ``space`` alone: activations searched in ``space`` are fixed at their widest
    choice (pinned groups keep their pins). Returns ``(weight-only space, expand)``, ``expand(genes)``
    giving the chromosome of ``space``."""
    if not space.search_activations:
        return space, tuple
    from tfmpq.search.space import SearchSpace

    widest = max(space.activation_choices)
    pins = {g: (w, space.activation_bits if a is None else a) for g, (w, a) in space.pinned.items()}
    sub = SearchSpace(space.group_names, space.bits, activation_bits=widest, overrides=space.overrides,
                      pinned=pins, model=space.model)
    return sub, lambda genes: tuple(genes) + (widest,) * len(space.free_groups)


def ilp_seeds(model, evaluator, space, train, *, metric: str, budgets: Sequence[float], sensitivity=None,
              sensitivity_data=None, num_probes: int = 64, num_samples=512, seed: int = 0) -> list[tuple]:
    """The Omega-optimal chromosome at each budget (duplicates dropped), to seed NSGA-II or BBPSO.

    With activation genes in ``space``, the weights are allocated with activations at their widest
    choice (the seeds then hold those activations).

    Args:
        model, evaluator, space, train: the search's.
        metric: a linear budget metric (``LINEAR_BUDGETS``).
        budgets: the bounds on ``metric``; those below the cheapest chromosome are skipped.
        sensitivity, sensitivity_data, num_probes, num_samples, seed: see :func:`ilp`.

    Returns:
        The chromosomes of ``space``, in budget order.
    """
    sub, expand = weight_space(space)
    traces = traces_for(model, train, sensitivity=sensitivity, sensitivity_data=sensitivity_data,
                        num_probes=num_probes, num_samples=num_samples, seed=seed)
    omega = omega_tables(model, sub, traces, per_channel=getattr(evaluator, "per_channel", True),
                         symmetric=getattr(evaluator, "symmetric", True))
    out: list[tuple] = []
    for target in budgets:
        try:
            tables, bound, accept = budget_tables(evaluator, sub, metric, float(target))
            found = solve_allocation(omega, tables, bound, accept=accept)
        except ValueError as e:
            if "no allocation fits" in str(e):
                continue
            raise
        if found and expand(found[0].bits) not in out:
            out.append(expand(found[0].bits))
    return out


def seeds_for(strategy_name: str, model, train, val, *, count: int, metric: str, high: float | None, run_dir,
              resume: bool, evaluator, evaluation, epochs, seed, bits, search_activations, kwargs: dict,
              sensitivity=None, sensitivity_data=None, num_probes: int = 64, num_samples=512):
    """ILP seeds for ``nsga2(seed_ilp=...)`` / ``bbpso(seed_ilp=...)``: ``count`` budgets on ``metric``
    spread from the cheapest chromosome to ``high`` (included; None: the dearest one, excluded).

    Returns:
        ``(seeds, evaluator, space)``; on resume the seeds stored in the run's signature.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"Invalid value for `seed_ilp`: expected an integer >= 0. Received: seed_ilp={count!r}")
    model = as_tf_keras(model)  # a Keras 3 model: converted once, shared by the traces and the evaluator
    evaluator, space = evaluator_and_space(model, train, val, evaluator=evaluator, evaluation=evaluation,
                                           epochs=epochs, seed=seed, bits=bits,
                                           search_activations=search_activations, kwargs=kwargs, run_dir=run_dir)
    stored = stored_options(run_dir, resume, strategy_name)
    if stored is not None and "initial" in stored:
        return [tuple(g) for g in stored["initial"]], evaluator, space
    sub, expand = weight_space(space)
    low, dearest = cost_range(evaluator, sub, metric)
    budgets = spread(low, dearest if high is None else float(high), count, include_high=high is not None)
    model = model if model is not None else getattr(evaluator, "model", None)
    seeds = ilp_seeds(model, evaluator, space, train, metric=metric, budgets=budgets, sensitivity=sensitivity,
                      sensitivity_data=sensitivity_data, num_probes=num_probes, num_samples=num_samples, seed=seed)
    return seeds, evaluator, space


def spread(low: float, high: float, count: int, *, include_high: bool) -> list[float]:
    """``count`` values evenly between ``low`` and ``high`` (``high`` included or not), ``low`` excluded."""
    steps = count if include_high else count + 1
    return [low + (high - low) * (i + 1) / steps for i in range(count)]


def cost_range(evaluator, space, metric: str) -> tuple[float, float]:
    """The cheapest and the dearest value of ``metric`` over the space (every gene at its ends)."""
    lo = evaluator.metrics(space.decode(tuple(c[0] for c in space.choices)))[metric]
    hi = evaluator.metrics(space.decode(tuple(c[-1] for c in space.choices)))[metric]
    return float(lo), float(hi)


def ilp(
    model=None,
    train=None,
    val=None,
    *,
    budget: str = "weight_bytes",
    target: float | None = None,
    solutions: int = 4,
    generations: int = 0,
    evaluation: str = "qat",
    epochs: int = 1,
    run_dir=None,
    resume: bool = False,
    seed: int = 0,
    evaluator=None,
    sensitivity=None,
    sensitivity_data=None,
    num_probes: int = 64,
    num_samples: int | None = 512,
    bits: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    verbose: int = 1,
    float_accuracy: float | None = None,
    **kwargs,
):
    """Hessian sensitivity + ILP (HAWQ-V3, Yao et al. 2021 sec. 3.4): the best allocations under a budget,
    scored with the evaluator.

    1. Hessian traces of every group's folded kernel on ``sensitivity_data`` (Hutchinson, see
       ``tfmpq.hessian``), and ``Omega_g(b) = Tr(H_g) ||Q_b(W_g) - W_g||^2 / n_g``.
    2. ``min sum_g Omega_g(b_g)`` subject to ``budget <= target``, solved exactly (HiGHS via
       ``scipy.optimize.milp``), with the ``solutions - 1`` next-best allocations (no-good cuts).
    3. Each is scored by the evaluator on the shared engine (cache, journal, resume, executors);
       ``result.best`` is the most accurate on validation within the budget, ``result.ilp_optimum`` the
       Omega-optimal one.

    Weight bits only: activations stay at ``activation_bits`` (8), so BOPs are linear in the choices.

    Args:
        model: the trained float Keras model.
        train: training data ``(x, y)`` (also the default ``sensitivity_data``).
        val: validation data.
        budget: ``"weight_bytes"``, ``"bops"``, ``"avg_op_bits"`` (as ``bops <= target^2 MACs``),
            ``"avg_weight_bits"``, ``"flash_bytes_int4"`` or ``"flash_bytes_lut"``. Defaults to "weight_bytes".
        target: the bound on ``budget`` (e.g. uniform 4-bit's weight bytes). Required.
        solutions: allocations scored: the optimum and the next-best. Defaults to 4.
        generations: further rounds of ``solutions`` next-best allocations. Defaults to 0.
        evaluation: ``"qat"`` or ``"ptq"``. Defaults to "qat".
        epochs: QAT epochs per candidate. Defaults to 1.
        run_dir, resume, seed, evaluator, verbose, float_accuracy: as in ``tfmpq.search.bbpso``.
        sensitivity: precomputed traces (``tfmpq.hessian.TraceEstimate`` or ``{group: Tr(H)}``); None
            estimates them. Defaults to None.
        sensitivity_data: ``(x, y)`` for the traces; None uses ``train``. Defaults to None.
        num_probes: Hutchinson probes. Defaults to 64.
        num_samples: samples of ``sensitivity_data`` in the loss. Defaults to 512.
        bits: candidate weight bit-widths. Defaults to 2..8.
        **kwargs: other arguments of ``tfmpq.search.run`` (``space``, ``pinned``, ``pin_first_last``,
            ``activation_bits``, ``overwrite``, ``executor``, ``batch_size``, ...).

    Returns:
        A ``Result`` with ``best``, ``report`` (as ``bbpso``'s), ``ilp_optimum`` (the Omega-optimal
        candidate), ``sensitivity`` (the traces) and ``sensitivity_seconds``; ``run_dir/sensitivity.json``.

    Raises:
        ValueError: no ``target``, a budget that is not linear, a target below every allocation,
            searched activation bits.

    Example:
    >>> u4 = tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, 4))["weight_bytes"]
    >>> result = tfmpq.search.ilp(model, (x_tr, y_tr), (x_val, y_val), budget="weight_bytes", target=u4)
    >>> result.best.genes, result.best.accuracy, result.ilp_optimum.genes
    """
    import time

    from tfmpq.search.strategies.bbpso import run_constrained

    if target is None:
        raise ValueError(f"Invalid value for `target`: expected the bound on `{budget}`. Received: target=None")
    if kwargs.get("search_activations"):
        raise ValueError("Invalid value for `search_activations`: the ILP allocates weight bits only.")
    kwargs.pop("search_activations", None)
    model = as_tf_keras(model)  # a Keras 3 model: converted once, shared by the traces and the evaluator
    evaluator, space = evaluator_and_space(model, train, val, evaluator=evaluator, evaluation=evaluation,
                                           epochs=epochs, seed=seed, bits=bits, search_activations=False,
                                           kwargs=kwargs, run_dir=run_dir)
    model = model if model is not None else getattr(evaluator, "model", None)
    tables, bound, accept = budget_tables(evaluator, space, budget, target)
    start = time.perf_counter()
    stored = stored_options(run_dir, resume, ILP.name)
    traces = None
    if stored is not None:  # resume: the tables the run was started with
        omega = stored["omega"]
        omega = {g: {int(b): v for b, v in t.items()} for g, t in omega.items()} if isinstance(omega, dict) \
            else [{int(b): v for b, v in t.items()} for t in omega]
    else:
        traces = traces_for(model, train, sensitivity=sensitivity, sensitivity_data=sensitivity_data,
                            num_probes=num_probes, num_samples=num_samples, seed=seed)
        omega = omega_tables(model, space, traces, per_channel=getattr(evaluator, "per_channel", True),
                             symmetric=getattr(evaluator, "symmetric", True))
    seconds = time.perf_counter() - start
    strategy = ILP(omega, tables, bound, solutions=solutions, generations=generations, accept=accept)
    result = run_constrained(strategy, model, train, val, budget=budget, target=target, evaluation=evaluation,
                             epochs=epochs, run_dir=run_dir, resume=resume, seed=seed, evaluator=evaluator,
                             bits=bits, search_activations=False, verbose=verbose, float_accuracy=float_accuracy,
                             space=space, **kwargs)
    result.sensitivity = traces
    result.sensitivity_seconds = seconds
    sols = result.history[-1].get("ilp_solutions") if result.history else None
    first = result.population[0] if result.population else None
    result.ilp_optimum = first
    if sols is not None and verbose and first is not None:
        acc = "failed" if not first.ok else f"{100 * first.accuracy:.2f}%"
        print(f"ilp: Omega-optimal allocation {first.genes}: accuracy {acc}; {sols} allocations scored; "
              f"sensitivity {seconds:.1f} s")
    write_sensitivity(result, traces)
    return result
