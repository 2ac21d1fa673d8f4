"""The one place a search problem is built: the space, the evaluator and the constraint.

Every entry point (``tfmpq.search.run``, ``nsga2``, ``bbpso``, ``ilp``, ... and ``tfmpq search``) hands
its keyword arguments to :func:`build_problem`, which sorts them by the dataclass that declares them
(:class:`~tfmpq.search.space.SpaceConfig`, :class:`~tfmpq.evaluate.EvaluatorConfig`), so an option
reaches what it configures from every entry point, and an unknown one is refused. The evaluator is
built here only (TensorFlow is imported then, not before).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from tfmpq.convert import as_tf_keras
from tfmpq.evaluate.config import EvaluatorConfig
from tfmpq.graph import warn_float_layers
from tfmpq.search.constraints import Constraint
from tfmpq.search.pareto import check_objectives
from tfmpq.search.space import SearchSpace, SpaceConfig

#: The keyword arguments that configure the space / the evaluator a search builds.
SPACE_OPTIONS = tuple(f.name for f in dataclasses.fields(SpaceConfig))
EVALUATOR_OPTIONS = tuple(f.name for f in dataclasses.fields(EvaluatorConfig))


@dataclasses.dataclass
class Problem:
    """What a search runs on: a strategy proposes chromosomes of ``space``, ``evaluator`` scores them.

    Attributes:
        space: the :class:`SearchSpace`.
        evaluator: anything with ``evaluate(policy) -> Candidate`` (built here, or the caller's).
        objectives: ``("accuracy", cost, ...)``.
        constraint: ``metric <= target``, or None.
        model: the float tf_keras model (the caller's, else the evaluator's), or None.
        train: the training data (the sensitivity-guided strategies estimate Hessian traces on it).
        space_config: the space's options (``space.config``).
        evaluator_config: the evaluator's options; None for an evaluator the caller built.
    """

    space: SearchSpace
    evaluator: Any
    objectives: tuple
    constraint: Constraint | None
    model: Any = None
    train: Any = None
    space_config: SpaceConfig | None = None
    evaluator_config: EvaluatorConfig | None = None


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Where and how a search runs, as the strategy registry's hooks need it (resume reads ``run.json``)."""

    run_dir: Any = None
    resume: bool = False
    seed: int = 0
    verbose: int = 1


def split_options(options: dict) -> tuple[dict, dict, dict]:
    """``options`` as ``(space options, evaluator options, the rest)``, by the dataclass declaring each."""
    space = {k: v for k, v in options.items() if k in SPACE_OPTIONS}
    evaluator = {k: v for k, v in options.items() if k in EVALUATOR_OPTIONS}
    rest = {k: v for k, v in options.items() if k not in space and k not in evaluator}
    return space, evaluator, rest


def make_space(model=None, *, evaluator=None, config: SpaceConfig | None = None, data=None, run_dir=None,
               resume: bool = False, **options) -> SearchSpace:
    """The :class:`SearchSpace` of ``model`` (or of ``evaluator.model``).

    Args:
        model: the float Keras model. Defaults to None (``evaluator.model``).
        evaluator: an evaluator with a ``model`` attribute. Defaults to None.
        config: the space's options; None builds a :class:`SpaceConfig` from ``**options``. Defaults to None.
        data: ``(x, y)`` the ``"hessian"`` channel ranking of a channel-wise space is estimated on. Defaults to None.
        run_dir, resume: a channel-wise space resumed in ``run_dir`` takes the channel order its ``run.json``
            recorded (the resumed run decodes its chromosomes as the first one did). Defaults to None, False.
        **options: :class:`SpaceConfig` fields (``bits``, ``search_activations``, ``pinned``, ...).

    Raises:
        ValueError: neither a model nor an evaluator with a ``model`` attribute; invalid options.
    """
    config = config if config is not None else SpaceConfig(**options)
    if resume and run_dir is not None:
        config = recorded_channel_order(config, run_dir)
    model = as_tf_keras(model)
    if model is None:
        model = getattr(evaluator, "model", None)
    if model is None:
        raise ValueError(
            "Cannot build the search space: pass `model`, an `evaluator` with a `.model`, or `space=`."
        )
    return SearchSpace.from_model(model, config=config, data=data if isinstance(data, (tuple, list)) else None)


def recorded_channel_order(config: SpaceConfig, run_dir) -> SpaceConfig:
    """``config`` with the channel order ``run_dir/run.json`` recorded for the same channel-wise options (else as
    it is: a run of other options is refused by the engine's signature check)."""
    from tfmpq.search import store

    if config.granularity != "channel" or config.channel_order is not None:
        return config
    found = store.read_signature(run_dir)
    space = found.get("space") if isinstance(found, dict) else None
    if not isinstance(space, dict) or not space.get("channel_order"):
        return config
    same = all(space.get(k) == getattr(config, k) for k in ("granularity", "channel_clusters", "channel_ranking"))
    return config.replace(channel_order=space["channel_order"]) if same else config


def build_problem(model=None, train=None, val=None, *, evaluator=None, space=None,
                  objectives: Sequence[str] = ("accuracy", "weight_bytes"), constraint=None, seed: int = 0,
                  run_dir=None, resume: bool = False, strict: bool = False, **options) -> Problem:
    """The space, the evaluator and the constraint of one search.

    Args:
        model: the trained float Keras model (tf_keras, or Keras 3: converted once here). Needed unless
            both ``space`` and ``evaluator`` are given.
        train, val: training and validation data; unused with ``evaluator``.
        evaluator: an object with ``evaluate(policy) -> Candidate``, or an :class:`EvaluatorConfig`;
            None builds an ``Evaluator`` from ``model``, ``train``, ``val`` and the evaluator options.
            Defaults to None.
        space: a :class:`SearchSpace`, or a :class:`SpaceConfig`; None builds the space of ``model``
            from the space options. Defaults to None.
        objectives: ``("accuracy", cost, ...)``. Defaults to ``("accuracy", "weight_bytes")``.
        constraint: ``(metric, target)`` or a :class:`Constraint`. Defaults to None.
        seed: the evaluator's seed. Defaults to 0.
        run_dir: where a one-shot evaluator keeps its shared model. Defaults to None.
        resume: the run in ``run_dir`` is resumed (a channel-wise space takes its recorded channel order).
            Defaults to False.
        strict: refuse a ``model`` with layers that would stay in float (``tfmpq.float_layers``); without
            it they are named in a ``UserWarning``, once per model. Defaults to False.
        **options: fields of :class:`SpaceConfig` and :class:`EvaluatorConfig` (ignored for a space or
            an evaluator given as an object, as before).

    Returns:
        A :class:`Problem`.

    Raises:
        TypeError: an option no configuration declares.
        ValueError: invalid options, or missing ``model`` / ``train`` / ``val``.
        tfmpq.errors.FloatLayerError: with ``strict``, a layer of ``model`` that would stay in float.
    """
    space_options, evaluator_options, unknown = split_options(options)
    if unknown:
        raise TypeError(f"Unknown search options: {sorted(unknown)}. Expected the options of the space "
                        f"({', '.join(SPACE_OPTIONS)}) or of the evaluator ({', '.join(EVALUATOR_OPTIONS)}).")
    model = as_tf_keras(model)  # once here; the evaluator and the space then share the tf_keras model
    if model is not None:
        warn_float_layers(model, strict=strict)  # FloatLayerError with strict: before any work
    space_config = _config(SpaceConfig, space if isinstance(space, SpaceConfig) else None, space_options)
    space = None if isinstance(space, SpaceConfig) else space
    evaluator_config = None
    if evaluator is None or isinstance(evaluator, EvaluatorConfig):
        evaluator_config = _config(EvaluatorConfig, evaluator, evaluator_options)
        if model is None or train is None or val is None:
            raise ValueError(
                "Invalid arguments: pass `model`, `train` and `val` (or an `evaluator=`). "
                f"Received: model={'set' if model is not None else None}, train={'set' if train is not None else None}, "
                f"val={'set' if val is not None else None}."
            )
        if space is None:
            space = make_space(model, config=space_config, data=train, run_dir=run_dir, resume=resume)
        evaluator = build_evaluator(model, train, val, evaluator_config, space=space, seed=seed, run_dir=run_dir)
        evaluator_config = evaluator.config
    elif getattr(evaluator, "evaluation", None) == "oneshot" and getattr(evaluator, "cache_dir", "") is None:
        evaluator.cache_dir = None if run_dir is None else str(run_dir)  # a resumed run loads the shared model
    if space is None:
        space = make_space(model, evaluator=evaluator, config=space_config, data=train, run_dir=run_dir, resume=resume)
    model = model if model is not None else getattr(evaluator, "model", None)
    return Problem(space=space, evaluator=evaluator, objectives=check_objectives(objectives),
                   constraint=as_constraint(constraint), model=model, train=train, space_config=space.config,
                   evaluator_config=evaluator_config)


def build_evaluator(model, train, val, config: EvaluatorConfig, *, space: SearchSpace, seed: int, run_dir=None):
    """The ``tfmpq.evaluate.Evaluator`` a search of ``space`` scores with (TensorFlow is imported here).

    A one-shot evaluator trains its shared model for the bit-widths ``space`` asks for and keeps it in
    ``run_dir``.
    """
    from tfmpq.evaluate import Evaluator  # the TensorFlow boundary of tfmpq.search

    cache_dir = None
    if config.evaluation == "oneshot":
        weight_bits = set(space.bits) | {b for v in space.overrides.values() for b in v}
        act = space.activation_choices if space.search_activations else (space.activation_bits,)
        config = config.replace(oneshot_bits=tuple(sorted(weight_bits)), oneshot_activation_bits=act)
        cache_dir = run_dir
    return Evaluator(model, train, val, config, seed=seed, cache_dir=cache_dir)


def as_constraint(constraint) -> Constraint | None:
    """``(metric, target)`` or a :class:`Constraint` as a :class:`Constraint` (None stays None).

    Raises:
        ValueError: anything else.
    """
    if constraint is None or isinstance(constraint, Constraint):
        return constraint
    try:
        metric, target = constraint
    except (TypeError, ValueError):
        raise ValueError(
            f"Invalid value for `constraint`: expected (metric, target) or a Constraint. Received: {constraint!r}"
        ) from None
    return Constraint(metric, float(target))


def _config(cls, given, options: dict):
    """``given`` (a configuration object), or one built from ``options``; not both."""
    if given is None:
        return cls(**options)
    if options:
        raise ValueError(f"Invalid arguments: pass a {cls.__name__} or its options ({sorted(options)}), not both.")
    return given
