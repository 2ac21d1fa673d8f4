"""The shared driver: a problem and a strategy in, a :class:`Result` out.

:func:`search` runs a registered strategy by name (``tfmpq.search.nsga2`` and the other entry points,
and ``tfmpq search``, call it), :func:`run` any :class:`Strategy` object. Both build the problem with
:func:`tfmpq.search.problem.build_problem`, run the engine (cache, journal, checkpoint, executors),
take a snapshot of it as the :class:`Result`, add a budgeted search's report (Tmamna et al. 2024, sec.
5.3), run the optional second stage (QAT re-scores) and write the outputs. Plots are the caller's
(the report module's ``write_plots``): the search does not draw.
"""
from __future__ import annotations

import math

from tfmpq.metrics import COST_METRICS
from tfmpq.search import registry
from tfmpq.search.constraints import Constraint
from tfmpq.search.engine import Engine
from tfmpq.search.executors import Executor
from tfmpq.search.executors import get as get_executor
from tfmpq.search.problem import Problem, RunContext, build_problem
from tfmpq.search.result import Result
from tfmpq.search.strategies.base import Strategy

#: Options of where and how a search runs (the rest configure the problem: :func:`build_problem`).
RUN_OPTIONS = ("run_dir", "resume", "overwrite", "seed", "verbose", "executor", "workers", "ray_address",
               "gpus_per_worker", "rescore", "rescore_epochs", "rescore_members")
RESCORES = (None, "qat")


def run(strategy: Strategy, model=None, train=None, val=None, **options) -> Result:
    """Runs any strategy object on the shared engine (the named entry points run registered ones).

    Args:
        strategy: a :class:`Strategy` instance.
        model: the trained float Keras model (tf_keras, or Keras 3: converted with
            ``tfmpq.convert.as_tf_keras``). Needed unless both ``space`` and ``evaluator`` are given.
        train: training data, ``(x, y)`` or a batched ``tf.data.Dataset``; unused with ``evaluator``.
        val: validation data, same forms; unused with ``evaluator``.
        **options: the problem's (:func:`tfmpq.search.problem.build_problem`: ``evaluator``, ``space``,
            ``objectives``, ``constraint``, ``strict`` and the fields of ``SpaceConfig`` and ``EvaluatorConfig``,
            e.g. ``evaluation``, ``epochs``, ``bits``, ``pinned``) and the run's:

            - ``run_dir``: directory for the journal, checkpoint and outputs; None writes nothing.
              Defaults to None.
            - ``resume``: continue the run in ``run_dir`` from its last finished generation. Defaults to False.
            - ``overwrite``: start afresh in a ``run_dir`` holding a previous run. Defaults to False.
            - ``seed``: seeds the strategy and the evaluator. Defaults to 0.
            - ``verbose``: 0 silent; 1 a line per generation and a progress bar per batch. Defaults to 1.
            - ``executor``: ``"serial"``, ``"process"``, ``"ray"`` or an :class:`Executor` (the same
              seed gives the same search with any executor; workers need ``train``/``val`` as arrays),
              with ``workers``, ``ray_address`` and ``gpus_per_worker`` (see
              :mod:`tfmpq.search.executors`). Defaults to "serial", None, None, 0.
            - ``rescore``: ``"qat"``: a two-stage search: after the search, re-score the front (a
              constrained search: the best) with stand-alone QAT (:meth:`Result.rescore`;
              ``rescored.json``), ``rescore_epochs`` QAT epochs each (default 2), at most
              ``rescore_members`` members spread along the cost (default: all). None: no second stage.

    Returns:
        A :class:`Result`; its outputs are written to ``run_dir``.

    Raises:
        TypeError: an unknown option. ValueError: invalid options. tfmpq.errors.CheckpointError:
        ``run_dir`` holds a run of another problem (``resume=True``) or any run (``resume=False``,
        ``overwrite=False``).
    """
    run_options, problem_options = _split_run_options(options)
    problem = build_problem(model, train, val, seed=run_options.get("seed", 0), run_dir=run_options.get("run_dir"),
                            resume=run_options.get("resume", False), **problem_options)  # the rescore options are checked first (_split_run_options)
    return run_problem(strategy, problem, **run_options)


def search(name: str, model=None, train=None, val=None, **options) -> Result:
    """Runs the registered strategy ``name`` (:mod:`tfmpq.search.registry`) on the problem ``options`` describe.

    Args:
        name: a registered strategy (``registry.names()``: ``"nsga2"``, ``"bbpso"``, ``"ilp"``, ...).
        model, train, val: as in :func:`run`.
        **options: the strategy's own options (its registry entry's, with their defaults), a budgeted
            strategy's ``budget``, ``target`` and ``float_accuracy`` (the float model's validation
            accuracy of the report's eq. 8; None: ``evaluator.float_accuracy()``), and every option of
            :func:`run`. The entry's defaults (e.g. BBPSO's ``epochs=2``) apply to options not given.

    Returns:
        A :class:`Result`.

    Raises:
        ValueError: an unknown strategy or budget, a missing or non-positive target, searched activations
            for a strategy that allocates weight bits only, invalid options.
        TypeError: an unknown option.
    """
    entry = registry.get(name)
    strategy_options = {o.name: options.pop(o.name, o.default) for o in entry.options}
    options = {**entry.defaults, **options}
    float_accuracy = None
    if entry.constrained:
        budget, target = options.pop("budget", entry.budget), options.pop("target", entry.target)
        float_accuracy = options.pop("float_accuracy", None)
        given = sorted(k for k in ("objectives", "constraint") if k in options)
        if given:
            raise TypeError(f"Invalid arguments for `{name}`: it sets the objectives and the constraint from `budget` "
                            f"and `target`. Received: {given}.")
        options.update(objectives=("accuracy", budget), constraint=check_budget(budget, target))
    if entry.weights_only:
        if options.get("search_activations"):
            raise ValueError(f"Invalid value for `search_activations`: {name} allocates weight bits only.")
        options["search_activations"] = False
    run_options, problem_options = _split_run_options(options)
    context = RunContext(**{k: run_options[k] for k in ("run_dir", "resume", "seed", "verbose") if k in run_options})
    problem = build_problem(model, train, val, seed=context.seed, run_dir=context.run_dir, resume=context.resume,
                            **problem_options)
    plan = entry.make(problem, strategy_options, context)
    plan = plan if isinstance(plan, registry.Plan) else registry.Plan(plan)
    result = run_problem(plan.strategy, problem, extras=plan.extras, report_budget=entry.constrained,
                         float_accuracy=float_accuracy, **run_options)
    if plan.finish is not None:
        plan.finish(result)
    return result


def run_problem(strategy: Strategy, problem: Problem, *, run_dir=None, resume: bool = False, overwrite: bool = False,
                seed: int = 0, verbose: int = 1, executor: str | Executor = "serial", workers: int | None = None,
                ray_address: str | None = None, gpus_per_worker: float = 0.0, rescore: str | None = None,
                rescore_epochs: int = 2, rescore_members: int | None = None, extras: dict | None = None,
                report_budget: bool = False, float_accuracy: float | None = None) -> Result:
    """Runs ``strategy`` on ``problem``: the engine, the :class:`Result` snapshot, the re-scores, the outputs.

    Args:
        strategy, problem: what to run.
        run_dir, resume, overwrite, seed, verbose, executor, workers, ray_address, gpus_per_worker, rescore,
            rescore_epochs, rescore_members: see :func:`run`.
        extras: declared ``Result`` fields known before the run (a registry entry's). Defaults to None.
        report_budget: add the best policy's budget report (:func:`budget_report_of`). Defaults to False.
        float_accuracy: the report's float accuracy; None asks the evaluator. Defaults to None.

    Returns:
        The :class:`Result`.
    """
    _check_rescore(rescore, rescore_epochs, rescore_members)
    runner = get_executor(executor, workers=workers, ray_address=ray_address, gpus_per_worker=gpus_per_worker)
    try:
        engine = Engine(problem.space, problem.evaluator, objectives=problem.objectives, constraint=problem.constraint,
                        run_dir=run_dir, resume=resume, overwrite=overwrite, seed=seed, verbose=verbose, executor=runner)
        state = engine.run(strategy)
    finally:
        if runner is not executor:  # made here from a name: stop its workers
            runner.close()
    extras = dict(extras or {})
    if report_budget:
        extras.update(budget_report_of(engine, problem, float_accuracy))
    result = Result.from_engine(engine, strategy, state, **extras)
    if rescore == "qat":
        result.rescore(rescore_epochs, max_members=rescore_members, verbose=verbose)
    result.save()
    if verbose:
        print(result.summary())
        if result.report is not None:
            print(budget_line(result))
    return result


def check_budget(budget: str, target) -> Constraint:
    """``budget <= target`` as a :class:`Constraint` (Tmamna et al. 2024, eq. 3).

    Raises:
        ValueError: a budget that is not a cost metric (``tfmpq.metrics.COST_METRICS``), a missing target or
            one that is not a number > 0.
    """
    if target is None:
        raise ValueError(f"Invalid value for `target`: expected the bound on `{budget}`. Received: target=None")
    if budget not in COST_METRICS:
        raise ValueError(f"Invalid value for `budget`: expected one of {COST_METRICS}. Received: budget={budget!r}")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target <= 0:
        raise ValueError(f"Invalid value for `target`: expected a number > 0 (the budget on `{budget}`). "
                         f"Received: target={target!r}")
    return Constraint(budget, float(target))


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


def budget_report_of(engine: Engine, problem: Problem, float_accuracy: float | None) -> dict:
    """A budgeted search's ``report`` and ``float_accuracy`` (``best.json`` holds the report too)."""
    if float_accuracy is None and callable(getattr(problem.evaluator, "float_accuracy", None)):
        float_accuracy = problem.evaluator.float_accuracy()
    best = engine.best()
    report = None
    if best is not None:
        report = budget_report(best, float_accuracy)
        report["feasible"] = engine.feasible(best)
        report["budget"] = problem.constraint.to_json()
    return {"float_accuracy": float_accuracy, "report": report}


def budget_line(result: Result) -> str:
    """The one line a budgeted search prints about its best policy."""
    r, c = result.report, result.constraint
    delta = "" if r["delta_accuracy"] is None else f" ({100 * r['delta_accuracy']:+.2f} pp vs. float)"
    acc = "failed" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
    return (f"{result.strategy} best under {c.metric} <= {c.target}: accuracy {acc}{delta}, "
            f"compression ratio (eq. 9) {_fmt(r['compression_ratio_eq9'], '.2f')}, avg op bits (eq. 11) "
            f"{_fmt(r['avg_op_bits'], '.3f')}, avg weight bits {_fmt(r['avg_weight_bits'], '.3f')}"
            + ("" if r["feasible"] else " [INFEASIBLE: no feasible policy seen]"))


def _check_rescore(rescore, rescore_epochs, rescore_members) -> None:
    if rescore not in RESCORES:
        raise ValueError(f"Invalid value for `rescore`: expected None or 'qat'. Received: rescore={rescore!r}")
    if rescore is not None and (not isinstance(rescore_epochs, int) or rescore_epochs < 1):
        raise ValueError(f"Invalid value for `rescore_epochs`: expected an integer >= 1. Received: {rescore_epochs!r}")
    if rescore_members is not None and (not isinstance(rescore_members, int) or rescore_members < 1):
        raise ValueError(
            f"Invalid value for `rescore_members`: expected None or an integer >= 1. Received: {rescore_members!r}")


def _split_run_options(options: dict) -> tuple[dict, dict]:
    """``(the run's options, the problem's options)``; the rescore options checked before any work."""
    run_options = {k: v for k, v in options.items() if k in RUN_OPTIONS}
    _check_rescore(run_options.get("rescore"), run_options.get("rescore_epochs", 2), run_options.get("rescore_members"))
    return run_options, {k: v for k, v in options.items() if k not in RUN_OPTIONS}


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)
