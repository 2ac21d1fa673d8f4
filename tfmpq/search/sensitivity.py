"""The sensitivity work the sensitivity-guided searches inject into their strategies.

HAWQ-V3's ILP (Yao et al. 2021, sec. 3.4), clustered TPE (Azizi et al. 2023) and the ILP seeds of
NSGA-II and BBPSO (``seed_ilp``) need Hessian traces of the float model (``tfmpq.hessian``, TensorFlow)
and the budget's per-gene cost terms (read off the evaluator's metrics); the strategies themselves
take plain tables and stay TensorFlow-free. Everything here runs before the search: the strategy
registry (:mod:`tfmpq.search.registry`) calls it to make a strategy, and a resumed run reads the
tables back from ``run.json`` (:func:`stored_options`) instead of estimating them again.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from tfmpq.policy import PRUNED
from tfmpq.search import store
from tfmpq.search.allocation import LINEAR_BUDGETS, linear_budget, separable_costs, solve_allocation


def budget_tables(evaluator, space, budget: str, target: float) -> tuple[list[dict], float, Callable[[tuple], bool]]:
    """The per-gene cost terms of ``budget`` on ``space``, the bound on their sum, and the exact check.

    Costs come from ``evaluator.metrics`` (``tfmpq.metrics.summary``: the very formulas the engine's
    constraint uses), read off one gene at a time and verified to add up
    (:func:`tfmpq.search.allocation.separable_costs`); ``avg_op_bits <= T`` is ``bops <= T^2 MACs``.
    In a space that prunes channels (``prune_channels``) a pruned cluster also removes the kernel rows it
    feeds in the next group, a product of two genes: the tables are then those of ``summary(...,
    keep_fed_rows=True)``, a sum of per-gene terms that bounds the deployed cost from above (a pruned
    cluster is credited with its own weights only), so every allocation under them meets the budget, and
    ``accept`` still checks the deployed cost.

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
    bound_only = {"keep_fed_rows": True} if any(PRUNED in c for c in space.choices) else {}

    def metrics(genes: tuple, **options) -> dict:
        key = (genes, bool(options))
        if key not in cache:
            cache[key] = evaluator.metrics(space.decode(genes), **options)
        return cache[key]

    widest = tuple(c[-1] for c in space.choices)  # nothing pruned: every MAC is counted (eq. 11's denominator)
    metric, bound = linear_budget(budget, target, metrics(widest).get("macs"))
    constant, tables = separable_costs(lambda g: metrics(tuple(g), **bound_only)[metric], space.choices, name=budget)
    return tables, bound - constant, lambda genes: float(metrics(tuple(genes))[budget]) <= float(target)


def stored_options(run_dir, resume: bool, name: str) -> dict | None:
    """The strategy options in ``run_dir/run.json`` of a run to resume (its tables), else None."""
    if not resume or run_dir is None:
        return None
    found = store.read_signature(run_dir)
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


def trace_dict(traces) -> tuple[dict, dict]:
    """``(trace, std_error)`` dicts from a TraceEstimate or a plain ``{group: trace}`` mapping."""
    if hasattr(traces, "trace"):
        return dict(traces.trace), dict(traces.std_error)
    return {k: float(v) for k, v in dict(traces).items()}, {}


def omega_tables(model, space, traces, *, per_channel: bool = True, symmetric: bool = True) -> list[dict]:
    """Omega per weight gene of ``space``: ``tfmpq.hessian.omega_table`` of the free groups, or for a
    channel-wise space ``tfmpq.hessian.cluster_omega`` of each gene's cluster (HAWQ-V3 eq. 7 per cluster; at
    0 bits, a pruned cluster, its whole weights), each at every width of the space (the ``ILP`` strategy keeps
    those its gene allows)."""
    from tfmpq.hessian import cluster_omega, omega_table

    bits = sorted({b for c in space.choices for b in c})
    if space.clusters:
        table = cluster_omega(model, channel_traces(traces, space), space.clusters, bits=bits)
        return [t for g in space.free_groups for t in table[g]]
    trace, _ = trace_dict(traces)
    table = omega_table(model, trace, bits=bits, per_channel=per_channel, symmetric=symmetric)
    return [table[g] for g in space.free_groups]


def channel_traces(traces, space) -> dict[str, np.ndarray]:
    """The per-channel Hessian traces the channel-wise ILP and clustered TPE weigh each cluster with.

    From a ``TraceEstimate``: its group's trace ``Tr(H_g)`` spread evenly over the group's channels, so a
    cluster's Omega is the group's per-weight trace times the cluster's own quantization error
    (``Tr(H_g) / n_g * ||Q_b(W_k) - W_k||^2``; HAWQ-V3 eq. 7 with the group's average trace), and a group's
    clusters at one width sum to its layer-wise Omega. Not the estimate's own ``channel_trace``: the
    Hutchinson probes restricted to a few channels are too noisy to weigh them (64 probes on the DS-CNN:
    b1_dw's four clusters -1.14..3.99 around the group's 4.89 +- 3.1), and a negative one, clamped to 0,
    made its cluster free at every width: the ILP gave it 2 bits in every allocation and its picks lost
    0.3..0.55 pp held out (README, "Channel-wise bits"). The channels' *order* may still come from their
    traces (``channel_ranking="hessian"``). From a plain ``{group: value}`` mapping, a sequence is taken as
    the channels' traces and a number is spread evenly over them."""
    if hasattr(traces, "trace"):  # a TraceEstimate (tfmpq.hessian is not imported here: it needs TensorFlow)
        traces = dict(traces.trace)
    out = {}
    for g in space.free_groups:
        value, channels = dict(traces)[g], sum(len(c) for c in space.clusters[g])
        out[g] = (np.asarray(value, np.float64) if isinstance(value, (list, tuple, np.ndarray))
                  else np.full(channels, float(value) / channels))
        if out[g].shape != (channels,):
            raise ValueError(f"Invalid value for `sensitivity`: group `{g}` has {channels} channels. Received "
                             f"{out[g].size} channel traces.")
    return out


def per_parameter(model, space, traces) -> dict | list:
    """The average (per-weight) Hessian trace of each weight gene (Azizi et al. 2023, sec. III.A): ``{group:
    Tr(H_g) / n_g}``, or for a channel-wise space one ``Tr(H_k) / n_k`` per cluster ``k`` (in gene order)."""
    params = getattr(traces, "params", None) or kernel_params(model, space)
    if not space.clusters:
        trace, _ = trace_dict(traces)
        return {g: trace[g] / params[g] for g in space.free_groups}
    by_channel = channel_traces(traces, space)
    out = []
    for g in space.free_groups:
        per_channel = params[g] / len(by_channel[g])
        out += [float(by_channel[g][list(k)].sum()) / (per_channel * len(k)) for k in space.clusters[g]]
    return out


def write_sensitivity(run_dir, traces, extra: dict | None = None) -> None:
    """``run_dir/sensitivity.json``: the traces the search used (and their standard errors)."""
    if run_dir is None or traces is None:
        return
    trace, se = trace_dict(traces)
    store.write_output(run_dir, store.SENSITIVITY, {"trace": trace, "std_error": se, **(extra or {})})


def weight_space(space):
    """The weight genes of ``space`` alone: activations searched in ``space`` are fixed at their widest
    choice (pinned groups keep their pins). Returns ``(weight-only space, expand)``, ``expand(genes)``
    giving the chromosome of ``space``."""
    if not space.search_activations:
        return space, tuple
    from tfmpq.search.space import SearchSpace

    widest = max(space.activation_choices)
    pins = {g: (w, space.activation_bits if a is None else a) for g, (w, a) in space.pinned.items()}
    config = space.config.replace(search_activations=False, activation_choices=None, activation_bits=widest,
                                  pinned=pins, pin_first_last=False)
    sub = SearchSpace(space.group_names, config=config, model=space.model)
    return sub, lambda genes: tuple(genes) + (widest,) * len(space.free_groups)


#: A budget metric that is not a sum of per-group terms, and the linear one that bounds it from above (the ILP
#: allocates under the stand-in, and each allocation is checked against the metric itself): "auto" packing
#: stores a group at most as INT4 packing does, so flash_bytes <= flash_bytes_int4.
LINEAR_STAND_INS = {"flash_bytes": "flash_bytes_int4"}


def ilp_seeds(model, evaluator, space, train, *, metric: str, budgets: Sequence[float], sensitivity=None,
              sensitivity_data=None, num_probes: int = 64, num_samples=512, seed: int = 0) -> list[tuple]:
    """The Omega-optimal chromosome at each budget (duplicates dropped), to seed NSGA-II or BBPSO.

    With activation genes in ``space``, the weights are allocated with activations at their widest
    choice (the seeds then hold those activations).

    Args:
        model, evaluator, space, train: the search's.
        metric: a linear budget metric (``LINEAR_BUDGETS``).
        budgets: the bounds on ``metric``; those below the cheapest chromosome are skipped.
        sensitivity, sensitivity_data, num_probes, num_samples, seed: see ``tfmpq.search.ilp``.

    Returns:
        The chromosomes of ``space``, in budget order.
    """
    sub, expand = weight_space(space)
    traces = traces_for(model, train, sensitivity=sensitivity, sensitivity_data=sensitivity_data,
                        num_probes=num_probes, num_samples=num_samples, seed=seed)
    omega = omega_tables(model, sub, traces, per_channel=getattr(evaluator, "per_channel", True),
                         symmetric=getattr(evaluator, "symmetric", True))
    omega = [{b: t[b] for b in allowed} for t, allowed in zip(omega, sub.choices)]  # a gene's own widths only
    out: list[tuple] = []
    linear = LINEAR_STAND_INS.get(metric, metric)
    for target in budgets:
        try:
            tables, bound, accept = budget_tables(evaluator, sub, linear, float(target))
            if linear != metric:
                accept = _exact_check(evaluator, sub, metric, float(target))
            found = solve_allocation(omega, tables, bound, accept=accept)
        except ValueError as e:
            if "no allocation fits" in str(e):
                continue
            raise
        if found and expand(found[0].bits) not in out:
            out.append(expand(found[0].bits))
    return out


def _exact_check(evaluator, space, metric: str, target: float) -> Callable[[tuple], bool]:
    return lambda genes: float(evaluator.metrics(space.decode(tuple(genes)))[metric]) <= target


def budget_seeds(problem, *, budgets, metric: str, kinds: Sequence[str] = ("ilp", "handmade"), seed: int = 0,
                 sensitivity=None, sensitivity_data=None, num_probes: int = 64, num_samples=512) -> list[tuple]:
    """Seeds at each budget on ``metric``: the ILP's Omega-optimal allocation (``"ilp"``) and what a user writes
    by hand (``"handmade"``: :mod:`tfmpq.search.handmade`'s families), so that a front is at least as good as
    those where a user's budget lies (issue 24).

    Args:
        problem: the search's :class:`~tfmpq.search.problem.Problem`.
        budgets: the budgets, or ``"auto"`` (:func:`tfmpq.search.budgets.auto_budgets` between uniform 2- and
            5-bit, what ``compare_at_budgets`` takes).
        metric: the cost metric the budgets bound (``flash_bytes`` included: its ILP allocates under
            ``flash_bytes_int4`` and checks ``flash_bytes``).
        kinds: which seeds. Defaults to both.
        seed, sensitivity, sensitivity_data, num_probes, num_samples: the Hessian traces (see ``tfmpq.search.ilp``).

    Returns:
        The chromosomes of ``problem.space``, duplicates dropped, in budget order.

    Raises:
        ValueError: an unknown kind, or bad budgets.
    """
    from tfmpq.search.budgets import auto_budgets, auto_range
    from tfmpq.search.handmade import handmade_baselines

    unknown = sorted(set(kinds) - {"ilp", "handmade"})
    if unknown:
        raise ValueError(f"Invalid value for `seed_kinds`: expected some of ('ilp', 'handmade'). Received: {unknown}")
    evaluator, space = problem.evaluator, problem.space
    sub, expand = weight_space(space)

    def cost_of(genes: tuple) -> float:
        return float(evaluator.metrics(sub.decode(tuple(genes)))[metric])

    if isinstance(budgets, str):
        if budgets != "auto":
            raise ValueError(f"Invalid value for `seed_budgets`: expected 'auto' or a list of numbers. "
                             f"Received: {budgets!r}")
        budgets = auto_budgets(*auto_range(sub, cost_of))
    out: list[tuple] = []
    if "handmade" in kinds:  # per-layer rules: on a channel-wise space, each group's clusters share its width
        params = kernel_params(problem.model, sub)
        layer = sub.layer_space()
        families = handmade_baselines(layer, [params[n] for n in sub.group_names],
                                      lambda genes: cost_of(sub.encode(layer.decode(genes))))
        out += [expand(sub.encode(layer.decode(g))) for b in budgets for g in (f(float(b)) for f in families.values())
                if g is not None]
    if "ilp" in kinds:
        out += ilp_seeds(problem.model, evaluator, space, problem.train, metric=metric, budgets=budgets,
                         sensitivity=sensitivity, sensitivity_data=sensitivity_data, num_probes=num_probes,
                         num_samples=num_samples, seed=seed)
    return list(dict.fromkeys(out))


def seeds_for(problem, *, name: str, count: int, metric: str, high: float | None, run_dir, resume: bool,
              seed: int, sensitivity=None, sensitivity_data=None, num_probes: int = 64, num_samples=512) -> list:
    """ILP seeds for ``nsga2(seed_ilp=...)`` / ``bbpso(seed_ilp=...)``: ``count`` budgets on ``metric``
    spread from the cheapest chromosome to ``high`` (included; None: the dearest one, excluded).

    Args:
        problem: the search's :class:`~tfmpq.search.problem.Problem`.
        name: the strategy's name (what ``run.json`` of a resumed run must name).

    Returns:
        The seeds; on resume the seeds stored in the run's signature.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"Invalid value for `seed_ilp`: expected an integer >= 0. Received: seed_ilp={count!r}")
    stored = stored_options(run_dir, resume, name)
    if stored is not None and "initial" in stored:
        return [tuple(g) for g in stored["initial"]]
    evaluator, space = problem.evaluator, problem.space
    sub, _ = weight_space(space)
    low, dearest = cost_range(evaluator, sub, metric)
    budgets = spread(low, dearest if high is None else float(high), count, include_high=high is not None)
    return ilp_seeds(problem.model, evaluator, space, problem.train, metric=metric, budgets=budgets,
                     sensitivity=sensitivity, sensitivity_data=sensitivity_data, num_probes=num_probes,
                     num_samples=num_samples, seed=seed)


def spread(low: float, high: float, count: int, *, include_high: bool) -> list[float]:
    """``count`` values evenly between ``low`` and ``high`` (``high`` included or not), ``low`` excluded."""
    steps = count if include_high else count + 1
    return [low + (high - low) * (i + 1) / steps for i in range(count)]


def cost_range(evaluator, space, metric: str) -> tuple[float, float]:
    """The cheapest and the dearest value of ``metric`` over the space (every gene at its ends)."""
    lo = evaluator.metrics(space.decode(tuple(c[0] for c in space.choices)))[metric]
    hi = evaluator.metrics(space.decode(tuple(c[-1] for c in space.choices)))[metric]
    return float(lo), float(hi)


def kernel_params(model, space) -> dict:
    """Each group's kernel weights (for traces given as a plain mapping)."""
    from tfmpq.graph import quantizable_groups  # the core's group analysis (no TensorFlow import here)

    return {g.name: g.kernel_params for g in quantizable_groups(model)}
