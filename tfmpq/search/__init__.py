"""Mixed-precision policy search: a space, an evaluator, a strategy on a shared engine, a result.

The pieces (pymoo's split): :class:`SearchSpace` (chromosome <-> ``QuantPolicy``), :class:`Evaluator`
(a policy in, a scored :class:`Candidate` out), a strategy (``strategies/``: NSGA-II, BBPSO, exhaustive,
the Hessian ILP, clustered TPE, ...) driven by :class:`~tfmpq.search.engine.Engine` (cache, journal,
checkpoint/resume, Deb's rule, hypervolume, progress), and a :class:`Result`. The algorithmic cores of
the sensitivity-guided strategies are pure functions: :mod:`~tfmpq.search.allocation` (the ILP and its
next-best solutions) and :mod:`~tfmpq.search.kmeans_tpe` (bit pruning, the dual threshold, Optuna's
TPE). Evaluations run in this process or, with
``executor="process"`` / ``"ray"``, on local worker processes or Ray actors (``executors.py``).

Example:
>>> result = tfmpq.search.nsga2(model, train=(x_tr, y_tr), val=(x_val, y_val), evaluation="qat",
...                             epochs=1, population=16, offspring=16, generations=10,
...                             run_dir="runs/fmnist", seed=0)
>>> for c in result.front: print(c.policy.genes, c.accuracy, c.weight_bytes)
>>> print(result.summary())
"""
from __future__ import annotations

from typing import Sequence

from tfmpq import report
from tfmpq.candidate import Candidate
from tfmpq.convert import as_tf_keras
from tfmpq.graph import warn_float_layers
from tfmpq.search.constraints import Constraint, deb_better
from tfmpq.search.engine import Engine
from tfmpq.search.pareto import check_objectives, hypervolume_2d
from tfmpq.search.executors import Executor, ProcessExecutor, RayExecutor, SerialExecutor
from tfmpq.search.executors import get as get_executor
from tfmpq.search.result import Result
from tfmpq.search.space import QUANT_BITS, SearchSpace
from tfmpq.search.strategies import BBPSO, CTPE, GA, ILP, NSGA2, Exhaustive, Strategy

__all__ = [
    "nsga2", "exhaustive", "run", "Evaluator", "Candidate", "SearchSpace", "Result", "Constraint",
    "deb_better", "Engine", "Strategy", "NSGA2", "Exhaustive", "hypervolume_2d", "make_space",
    "bbpso", "plain_bbpso", "ga", "BBPSO", "GA", "Executor", "SerialExecutor", "ProcessExecutor", "RayExecutor",
    "get_executor", "ilp", "ctpe", "ILP", "CTPE", "solve_allocation",
]


def _evaluator_class():
    """``tfmpq.evaluate.Evaluator``, imported when a search first needs to build one: the TensorFlow
    boundary of ``tfmpq.search`` (ranking, journals, results and reports need no TensorFlow)."""
    from tfmpq.evaluate import Evaluator

    return Evaluator


def __getattr__(name):
    """``tfmpq.search.Evaluator`` (and ``EvaluatorSpec``) load TensorFlow only when asked for."""
    if name in ("Evaluator", "EvaluatorSpec"):
        import tfmpq.evaluate as evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module 'tfmpq.search' has no attribute {name!r}")


def make_space(
    model=None,
    *,
    evaluator=None,
    bits: Sequence[int] = QUANT_BITS,
    search_activations: bool = False,
    activation_bits: int = 8,
    activation_choices: Sequence[int] | None = None,
    overrides=None,
    pinned=None,
    pin_first_last: bool = False,
) -> SearchSpace:
    """The :class:`SearchSpace` of ``model`` (or of ``evaluator.model``).

    Raises:
        ValueError: neither a model nor an evaluator with a ``model`` attribute.
    """
    model = as_tf_keras(model)
    if model is None:
        model = getattr(evaluator, "model", None)
    if model is None:
        raise ValueError(
            "Cannot build the search space: pass `model`, an `evaluator` with a `.model`, or `space=`."
        )
    return SearchSpace.from_model(
        model, bits=bits, search_activations=search_activations, activation_bits=activation_bits,
        activation_choices=activation_choices, overrides=overrides, pinned=pinned, pin_first_last=pin_first_last,
    )


def run(
    strategy: Strategy,
    model=None,
    train=None,
    val=None,
    *,
    evaluation: str = "qat",
    epochs: int = 1,
    space: SearchSpace | None = None,
    evaluator=None,
    objectives: Sequence[str] = ("accuracy", "weight_bytes"),
    constraint: Constraint | tuple[str, float] | None = None,
    run_dir=None,
    resume: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    verbose: int = 1,
    bits: Sequence[int] = QUANT_BITS,
    search_activations: bool = False,
    activation_bits: int = 8,
    activation_choices: Sequence[int] | None = None,
    overrides=None,
    pinned=None,
    pin_first_last: bool = False,
    batch_size: int = 64,
    per_channel: bool = True,
    symmetric: bool = True,
    learning_rate: float = 1e-4,
    calibration_batches: int = 4,
    executor: str | Executor = "serial",
    workers: int | None = None,
    ray_address: str | None = None,
    gpus_per_worker: float = 0.0,
    distill: bool = False,
    oneshot_learning_rate: float | None = None,
    rescore: str | None = None,
    rescore_epochs: int = 2,
    rescore_members: int | None = None,
    strict: bool = False,
) -> Result:
    """Runs any strategy on the shared engine; :func:`nsga2`, :func:`exhaustive` (and BBPSO) call it.

    Args:
        strategy: a :class:`Strategy` instance.
        model: the trained float Keras model (tf_keras, or Keras 3: converted with
            ``tfmpq.convert.as_tf_keras``). Needed unless both ``space`` and ``evaluator`` are given.
        train: training data, ``(x, y)`` or a batched ``tf.data.Dataset``; unused with ``evaluator``.
        val: validation data, same forms; unused with ``evaluator``.
        evaluation: ``"qat"``, ``"ptq"`` or ``"oneshot"`` (see :class:`Evaluator`; oneshot trains its
            shared model for the space's bit-widths, saves it in ``run_dir`` and a resumed run loads it).
            Defaults to "qat".
        epochs: QAT epochs per candidate (oneshot: of the shared training). Defaults to 1.
        space: a prebuilt :class:`SearchSpace`; else built from ``model`` with ``bits``,
            ``search_activations``, ``activation_bits``, ``overrides``, ``pinned``,
            ``pin_first_last``. Defaults to None.
        evaluator: scores policies (anything with ``evaluate(policy) -> Candidate``); None builds an
            :class:`Evaluator` from ``model``, ``train``, ``val`` and the evaluation options.
            Defaults to None.
        objectives: ``("accuracy", cost, ...)``: accuracy maximised, the costs (``"weight_bytes"``,
            ``"bops"``, ...) minimised. Defaults to ``("accuracy", "weight_bytes")``.
        constraint: ``(metric, target)`` or a :class:`Constraint`: ``metric <= target``, handled with
            Deb's rule. Defaults to None.
        run_dir: directory for the journal, checkpoint and outputs; None writes nothing.
            Defaults to None.
        resume: continue the run in ``run_dir`` from its last finished generation. Defaults to False.
        overwrite: start afresh in a ``run_dir`` holding a previous run. Defaults to False.
        seed: seeds the strategy and the evaluator. Defaults to 0.
        verbose: 0 silent; 1 a line per generation and a progress bar per batch. Defaults to 1.
        bits, search_activations, activation_bits, activation_choices, overrides, pinned,
            pin_first_last: the space
            (see :class:`SearchSpace`).
        batch_size, per_channel, symmetric, learning_rate, calibration_batches: the evaluator
            (see :class:`Evaluator`).
        executor: where candidates are evaluated: ``"serial"`` (this process), ``"process"`` (local
            worker processes), ``"ray"`` (Ray actors, ``pip install tfmpq[ray]``) or an
            :class:`Executor`. The same seed gives the same search with any executor (QAT scores on
            CPU also depend on TensorFlow's thread count, which workers set to CPUs / workers: see
            ``tfmpq.evaluate.configure_tensorflow``). Workers need ``train``/``val`` as arrays.
            Defaults to "serial".
        workers: worker processes or Ray actors; None: one per CPU (Ray: as many as the cluster
            holds). Defaults to None.
        ray_address: the Ray cluster to join (e.g. ``"auto"``); None starts a local Ray.
            Defaults to None.
        gpus_per_worker: GPUs each Ray actor reserves (fractions share a GPU). Defaults to 0.
        distill: oneshot: in-place distillation in the shared training (see :class:`Evaluator`).
            Defaults to False.
        oneshot_learning_rate: oneshot: the learning rate of the shared training; None uses
            ``learning_rate``, which the re-scores and fine-tunes always use. Defaults to None.
        rescore: ``"qat"``: a two-stage search: after the search, re-score the front (a constrained
            search: the best) with stand-alone QAT (:meth:`Result.rescore`; ``rescored.json``). None:
            no second stage. Defaults to None.
        rescore_epochs: QAT epochs per re-scored member. Defaults to 2.
        rescore_members: re-score at most this many front members, spread evenly along the cost
            (:meth:`Result.rescore`); None: the whole front. Defaults to None.
        strict: refuse a ``model`` with layers that would stay in float (``tfmpq.float_layers``);
            without it they are named in a ``UserWarning``, once per model. Defaults to False.

    Returns:
        A :class:`Result`; its outputs are written to ``run_dir``.

    Raises:
        ValueError: invalid options. tfmpq.errors.CheckpointError: ``run_dir`` holds a run of
        another problem (``resume=True``) or any run (``resume=False``, ``overwrite=False``).
        tfmpq.errors.FloatLayerError: with ``strict``, a layer of ``model`` that would stay in float.
    """
    model = as_tf_keras(model)  # once here; the evaluator and the space then share the tf_keras model
    if model is not None:
        warn_float_layers(model, strict=strict)  # FloatLayerError with strict: before any work
    if rescore not in (None, "qat"):
        raise ValueError(f"Invalid value for `rescore`: expected None or 'qat'. Received: rescore={rescore!r}")
    if rescore is not None and (not isinstance(rescore_epochs, int) or rescore_epochs < 1):
        raise ValueError(f"Invalid value for `rescore_epochs`: expected an integer >= 1. Received: {rescore_epochs!r}")
    if rescore_members is not None and (not isinstance(rescore_members, int) or rescore_members < 1):
        raise ValueError(
            f"Invalid value for `rescore_members`: expected None or an integer >= 1. Received: {rescore_members!r}")
    if evaluator is None:
        if model is None or train is None or val is None:
            raise ValueError(
                "Invalid arguments: pass `model`, `train` and `val` (or an `evaluator=`). "
                f"Received: model={'set' if model is not None else None}, train={'set' if train is not None else None}, "
                f"val={'set' if val is not None else None}."
            )
        oneshot = {}
        if evaluation == "oneshot":
            # the shared model is trained for the bit-widths this space will ask for
            if space is not None:
                weight_bits = set(space.bits) | {b for v in space.overrides.values() for b in v}
                act = space.activation_choices if space.search_activations else (space.activation_bits,)
            else:
                weight_bits = set(bits) | {b for v in (overrides or {}).values() for b in v}
                act = tuple(activation_choices or bits) if search_activations else (activation_bits,)
            oneshot = dict(distill=distill, oneshot_bits=tuple(sorted(weight_bits)), oneshot_activation_bits=act,
                           oneshot_learning_rate=oneshot_learning_rate, cache_dir=run_dir)
        evaluator = _evaluator_class()(
            model, train, val, evaluation=evaluation, epochs=epochs, batch_size=batch_size, seed=seed,
            per_channel=per_channel, symmetric=symmetric, learning_rate=learning_rate,
            calibration_batches=calibration_batches, **oneshot,
        )
    elif getattr(evaluator, "evaluation", None) == "oneshot" and getattr(evaluator, "cache_dir", "") is None:
        evaluator.cache_dir = None if run_dir is None else str(run_dir)  # a resumed run loads the shared model
    if space is None:
        space = make_space(
            model, evaluator=evaluator, bits=bits, search_activations=search_activations,
            activation_bits=activation_bits, activation_choices=activation_choices, overrides=overrides,
            pinned=pinned, pin_first_last=pin_first_last,
        )
    if constraint is not None and not isinstance(constraint, Constraint):
        try:
            metric, target = constraint
        except (TypeError, ValueError):
            raise ValueError(
                f"Invalid value for `constraint`: expected (metric, target) or a Constraint. Received: {constraint!r}"
            ) from None
        constraint = Constraint(metric, float(target))
    runner = get_executor(executor, workers=workers, ray_address=ray_address, gpus_per_worker=gpus_per_worker)
    try:
        engine = Engine(
            space, evaluator, objectives=objectives, constraint=constraint, run_dir=run_dir, resume=resume,
            overwrite=overwrite, seed=seed, verbose=verbose, executor=runner,
        )
        state = engine.run(strategy)
    finally:
        if runner is not executor:  # made here from a name: stop its workers
            runner.close()
    result = Result(engine, strategy, state)
    if rescore == "qat":
        result.rescore(rescore_epochs, max_members=rescore_members, verbose=verbose)
    result.save()
    if result.run_dir is not None:
        report.write_plots(result)
    if verbose:
        print(result.summary())
    return result


def nsga2(
    model=None,
    train=None,
    val=None,
    *,
    evaluation: str = "qat",
    epochs: int = 1,
    population: int = 16,
    offspring: int = 16,
    generations: int = 10,
    init: str = "uniform",
    crossover: str = "uniform",
    crossover_prob: float = 0.9,
    mutation: str = "one_gene",
    mutation_prob: float = 0.1,
    run_dir=None,
    resume: bool = False,
    seed: int = 0,
    evaluator=None,
    objectives: Sequence[str] = ("accuracy", "weight_bytes"),
    verbose: int = 1,
    seed_ilp: int = 0,
    sensitivity=None,
    **kwargs,
) -> Result:
    """NSGA-II search for the accuracy / size Pareto front (Šafář, "Automated Quantization of
    Neural Networks", sec. 2.2).

    Args:
        model: the trained float Keras model.
        train: training data ``(x, y)`` or a batched ``tf.data.Dataset``.
        val: validation data.
        evaluation: ``"qat"`` (Šafář) or ``"ptq"`` (Santini). Defaults to "qat".
        epochs: QAT epochs per candidate. Defaults to 1.
        population: NSGA-II population size (mu). Defaults to 16.
        offspring: offspring per generation (lambda). Defaults to 16.
        generations: generations after the initial population. Defaults to 10.
        init: ``"uniform"`` (all uniform policies + their mutants, Šafář) or ``"random"``.
            Defaults to "uniform".
        crossover: ``"uniform"``, ``"one_point"`` or ``"two_point"``. Defaults to "uniform".
        crossover_prob: probability a pair is crossed. Defaults to 0.9.
        mutation: ``"one_gene"`` (Šafář) or ``"per_gene"``. Defaults to "one_gene".
        mutation_prob: probability a child is mutated (Šafář: 10 %). Defaults to 0.1.
        run_dir: run directory (journal, checkpoint, outputs). Defaults to None.
        resume: continue the run in ``run_dir``. Defaults to False.
        seed: random seed of the search and the evaluator. Defaults to 0.
        evaluator: a custom evaluator. Defaults to None (an :class:`Evaluator`).
        objectives: ``("accuracy", "weight_bytes")`` or e.g. ``("accuracy", "bops")``.
            Defaults to ``("accuracy", "weight_bytes")``.
        verbose: 0 silent, 1 progress. Defaults to 1.
        seed_ilp: put this many ILP allocations into the initial population (Hessian traces of the
            float model on ``train``, then :func:`tfmpq.search.ilp`'s Omega-optimal allocation at budgets
            on ``objectives[1]`` spread evenly between the cheapest and the dearest policy), after the
            uniform policies. 0 for none. Defaults to 0.
        sensitivity: precomputed traces for ``seed_ilp`` (``tfmpq.hessian.TraceEstimate`` or
            ``{group: Tr(H)}``). Defaults to None.
        **kwargs: the other arguments of :func:`run` (``space``, ``bits``, ``search_activations``,
            ``pinned``, ``pin_first_last``, ``overrides``, ``constraint``, ``overwrite``,
            ``batch_size``, ...).

    Returns:
        A :class:`Result` (``front``, ``candidates``, ``history``, ``finetune()``, ``export()``).

    Example:
    >>> result = tfmpq.search.nsga2(model, (x_tr, y_tr), (x_val, y_val), evaluation="ptq",
    ...                             generations=5, run_dir="runs/digits", seed=0)
    >>> result.front[0].weight_bytes
    """
    initial = ()
    if seed_ilp:
        from tfmpq.search.strategies.ilp import seeds_for

        objectives = check_objectives(objectives)
        initial, evaluator, kwargs["space"] = seeds_for(
            NSGA2.name, model, train, val, count=seed_ilp, metric=objectives[1], high=None, run_dir=run_dir,
            resume=resume, evaluator=evaluator, evaluation=evaluation, epochs=epochs, seed=seed,
            bits=kwargs.pop("bits", QUANT_BITS), search_activations=kwargs.pop("search_activations", False),
            kwargs=kwargs, sensitivity=sensitivity)
    strategy = NSGA2(population, offspring, generations, init=init, crossover=crossover,
                     crossover_prob=crossover_prob, mutation=mutation, mutation_prob=mutation_prob, initial=initial)
    return run(strategy, model, train, val, evaluation=evaluation, epochs=epochs, evaluator=evaluator,
               objectives=objectives, run_dir=run_dir, resume=resume, seed=seed, verbose=verbose, **kwargs)


def exhaustive(
    model=None,
    train=None,
    val=None,
    *,
    evaluation: str = "ptq",
    epochs: int = 1,
    batch_size_search: int = 64,
    max_size: int = 4096,
    run_dir=None,
    resume: bool = False,
    seed: int = 0,
    evaluator=None,
    objectives: Sequence[str] = ("accuracy", "weight_bytes"),
    verbose: int = 1,
    **kwargs,
) -> Result:
    """Scores every policy of a small space (Santini, sec. V: a 2-layer space is better enumerated).

    Args:
        model, train, val, evaluation, epochs, run_dir, resume, seed, evaluator, objectives, verbose:
            as in :func:`nsga2`, except ``evaluation`` defaults to "ptq".
        batch_size_search: chromosomes per checkpointed batch. Defaults to 64.
        max_size: the largest space accepted. Defaults to 4096.
        **kwargs: the other arguments of :func:`run`.

    Returns:
        A :class:`Result` whose ``front`` is the true Pareto front of the space.

    Raises:
        ValueError: the space has more than ``max_size`` chromosomes.
    """
    strategy = Exhaustive(batch_size=batch_size_search, max_size=max_size)
    return run(strategy, model, train, val, evaluation=evaluation, epochs=epochs, evaluator=evaluator,
               objectives=objectives, run_dir=run_dir, resume=resume, seed=seed, verbose=verbose, **kwargs)


# Constrained single-objective strategies (Tmamna et al. 2024): defined with their strategy classes; imported
# last because they call `run` above.
from tfmpq.search.strategies.bbpso import bbpso, plain_bbpso  # noqa: E402
from tfmpq.search.strategies.ga import ga  # noqa: E402
# Sensitivity-guided searches (HAWQ-V3's ILP; Azizi et al. 2023's clustered TPE).
from tfmpq.search.allocation import solve_allocation  # noqa: E402
from tfmpq.search.strategies.ctpe import ctpe  # noqa: E402
from tfmpq.search.strategies.ilp import ilp  # noqa: E402
