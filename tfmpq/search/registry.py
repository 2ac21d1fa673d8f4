"""The strategy registry: each search strategy's name, options, defaults and how it is made for a problem.

``tfmpq.search.search(name, ...)``, the named entry points (``nsga2``, ``bbpso``, ...) and
``tfmpq search --strategy`` (its choices, flags and help) all read this table, so adding a strategy
takes its own file in ``strategies/`` and one :func:`register` call here. An entry's ``make`` turns a
:class:`~tfmpq.search.problem.Problem` and the strategy's options into a :class:`Plan`: the strategy,
the result fields known before the run (e.g. the Hessian traces) and what to do after it (e.g. write
``sensitivity.json``). The TensorFlow work some strategies need (Hessian traces, the float kernels)
happens here, through :mod:`tfmpq.search.sensitivity` and :mod:`tfmpq.search.importance`, never in a
strategy.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

from tfmpq.options import Flag, Option
from tfmpq.search import sensitivity
from tfmpq.search.importance import kernels_of, kinds_of
from tfmpq.search.kmeans_tpe import DEFAULT_ALPHA, DEFAULT_C, DEFAULT_K, check_installed
from tfmpq.search.problem import Problem, RunContext
from tfmpq.search.strategies import BBPSO, CTPE, GA, ILP, NSGA2, Exhaustive, Strategy
from tfmpq.search.strategies.bbpso import INITS


@dataclasses.dataclass
class Plan:
    """What a registry entry makes for one problem.

    Attributes:
        strategy: the :class:`Strategy` to run.
        extras: declared ``Result`` fields known before the run (``sensitivity``, ``sensitivity_seconds``).
        finish: called with the ``Result`` after the run (writes ``sensitivity.json``, prints a line), or None.
    """

    strategy: Strategy
    extras: dict = dataclasses.field(default_factory=dict)
    finish: Callable[[Any], None] | None = None


@dataclasses.dataclass(frozen=True)
class StrategyEntry:
    """One registered strategy.

    Attributes:
        name: the strategy's name (``Strategy.name``; ``--strategy NAME``).
        summary: what it finds, in a line (``tfmpq search --help``).
        make: ``make(problem, options, context) -> Plan`` (or a bare ``Strategy``).
        options: the strategy's own :class:`Option` s (with a ``Flag``: on the command line).
        defaults: the evaluator, space or run options it defaults otherwise than their configuration
            (e.g. BBPSO: ``epochs=2``, ``search_activations=True``). Defaults to none.
        constrained: the most accurate policy under ``budget <= target`` (Tmamna et al. 2024, eq. 3):
            the entry takes ``budget``, ``target`` and ``float_accuracy`` and its result a budget report.
            Defaults to False.
        budget: a constrained entry's default budget metric. Defaults to "avg_op_bits".
        target: a constrained entry's default target; None makes ``target`` required. Defaults to 4.0.
        weights_only: allocates weight bits only (refuses ``search_activations=True``). Defaults to False.
        cli: offered by ``tfmpq search --strategy``. Defaults to True.
    """

    name: str
    summary: str
    make: Callable[..., Plan | Strategy]
    options: tuple[Option, ...] = ()
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    constrained: bool = False
    budget: str = "avg_op_bits"
    target: float | None = 4.0
    weights_only: bool = False
    cli: bool = True

    def option_defaults(self) -> dict:
        """``{option name: default}`` of the strategy's own options."""
        return {o.name: o.default for o in self.options}


REGISTRY: dict[str, StrategyEntry] = {}


def register(entry: StrategyEntry) -> StrategyEntry:
    """Adds ``entry`` (replacing one of the same name) and returns it."""
    REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> StrategyEntry:
    """The entry of strategy ``name``.

    Raises:
        ValueError: no strategy of that name (the message lists them).
    """
    if name not in REGISTRY:
        raise ValueError(f"Invalid value for `strategy`: expected one of {tuple(REGISTRY)}. Received: strategy={name!r}")
    return REGISTRY[name]


def names(cli: bool = False) -> tuple[str, ...]:
    """The registered strategies, in registration order (``cli=True``: those on the command line)."""
    return tuple(n for n, e in REGISTRY.items() if e.cli or not cli)


# -- options shared by several strategies ---------------------------------------------------------------
SEED_ILP = Option("seed_ilp", 0, Flag("put N ILP allocations at spread budgets into the initial population",
                                      type="non_negative_int", metavar="N"))
SENSITIVITY = Option("sensitivity", None)
NUM_PROBES = Option("num_probes", 64, Flag("Hutchinson probes of the Hessian traces", flag="--probes",
                                           type="positive_int"))
HESSIAN = (SENSITIVITY, Option("sensitivity_data", None), NUM_PROBES, Option("num_samples", 512))


SEED_BUDGETS = Option("seed_budgets", None)
SEED_KINDS = Option("seed_kinds", ("ilp", "handmade"))


def _seeds(problem: Problem, o: dict, run: RunContext, name: str, metric: str, high: float | None) -> tuple:
    """The initial population's seeds: ``seed_ilp`` ILP allocations at spread budgets, and at each of
    ``seed_budgets`` the ILP's and the hand-made policies (``seed_kinds``); a resumed run reads them back."""
    if not o["seed_ilp"] and o.get("seed_budgets") is None:
        return ()
    stored = sensitivity.stored_options(run.run_dir, run.resume, name)
    if stored is not None and "initial" in stored:
        return tuple(tuple(g) for g in stored["initial"])
    seeds = []
    if o["seed_ilp"]:
        seeds += sensitivity.seeds_for(problem, name=name, count=o["seed_ilp"], metric=metric, high=high,
                                       run_dir=run.run_dir, resume=run.resume, seed=run.seed,
                                       sensitivity=o["sensitivity"])
    if o.get("seed_budgets") is not None:
        seeds += sensitivity.budget_seeds(problem, budgets=o["seed_budgets"], metric=metric, kinds=o["seed_kinds"],
                                          seed=run.seed, sensitivity=o["sensitivity"])
    return tuple(dict.fromkeys(tuple(g) for g in seeds))


# -- the built-in strategies ------------------------------------------------------------------------------
def _make_nsga2(problem: Problem, o: dict, run: RunContext) -> NSGA2:
    initial = _seeds(problem, o, run, NSGA2.name, problem.objectives[1], None)
    return NSGA2(o["population"], o["offspring"], o["generations"], init=o["init"], crossover=o["crossover"],
                 crossover_prob=o["crossover_prob"], mutation=o["mutation"], mutation_prob=o["mutation_prob"],
                 initial=initial)


def _make_bbpso(problem: Problem, o: dict, run: RunContext) -> BBPSO:
    initial = _seeds(problem, o, run, BBPSO.name, problem.constraint.metric, problem.constraint.target)
    strategy = BBPSO(o["swarm"], o["iterations"], init=o["init"], screening=o["screening"],
                     local_search=o["local_search"], gamma=o["gamma"], R=o["R"], importance=o["importance"],
                     kernels=o["kernels"], initial=initial)
    if strategy.init == "ligpi" and o["importance"] is None and o["kernels"] is None:  # LIGPI reads the model
        if problem.model is None:
            raise ValueError("init='ligpi' needs the float model's kernels: pass `model=` (or an evaluator with "
                             "`.model`), `kernels=`, or use init='random'.")
        groups = problem.space.free_groups
        strategy.kernels = kernels_of(problem.model, groups)
        strategy.kinds = dict(zip(groups, kinds_of(problem.model, groups)))
    return strategy


def _make_ga(problem: Problem, o: dict, run: RunContext) -> GA:
    return GA(o["population"], o["generations"], crossover_prob=o["crossover_prob"],
              mutation_gene_prob=o["mutation_gene_prob"])


def _make_exhaustive(problem: Problem, o: dict, run: RunContext) -> Exhaustive:
    return Exhaustive(batch_size=o["batch_size_search"], max_size=o["max_size"])


def _make_ilp(problem: Problem, o: dict, run: RunContext) -> Plan:
    evaluator, space = problem.evaluator, problem.space
    tables, bound, accept = sensitivity.budget_tables(evaluator, space, problem.constraint.metric,
                                                      problem.constraint.target)
    start = time.perf_counter()
    stored = sensitivity.stored_options(run.run_dir, run.resume, ILP.name)
    traces = None
    if stored is not None:  # resume: the tables the run was started with
        omega = stored["omega"]
        omega = {g: {int(b): v for b, v in t.items()} for g, t in omega.items()} if isinstance(omega, dict) \
            else [{int(b): v for b, v in t.items()} for t in omega]
    else:
        traces = _traces(problem, o, run)
        omega = sensitivity.omega_tables(problem.model, space, traces,
                                         per_channel=getattr(evaluator, "per_channel", True),
                                         symmetric=getattr(evaluator, "symmetric", True))
    seconds = time.perf_counter() - start
    strategy = ILP(omega, tables, bound, solutions=o["solutions"], generations=o["generations"], accept=accept)

    def finish(result) -> None:
        sols = result.history[-1].get("ilp_solutions") if result.history else None
        first = result.ilp_optimum
        if sols is not None and run.verbose and first is not None:
            acc = "failed" if not first.ok else f"{100 * first.accuracy:.2f}%"
            print(f"ilp: Omega-optimal allocation {first.genes}: accuracy {acc}; {sols} allocations scored; "
                  f"sensitivity {seconds:.1f} s")
        sensitivity.write_sensitivity(result.run_dir, traces)

    return Plan(strategy, {"sensitivity": traces, "sensitivity_seconds": seconds}, finish)


def _make_ctpe(problem: Problem, o: dict, run: RunContext) -> Plan:
    check_installed()  # fail before any work when the extra is missing
    evaluator, space = problem.evaluator, problem.space
    tables, bound, accept = sensitivity.budget_tables(evaluator, space, problem.constraint.metric,
                                                      problem.constraint.target)
    stored = sensitivity.stored_options(run.run_dir, run.resume, CTPE.name)
    traces = None
    if stored is not None:
        per_param = stored["sensitivity"]
    else:
        traces = _traces(problem, o, run)
        per_param = sensitivity.per_parameter(problem.model, space, traces)
    strategy = CTPE(per_param, tables, bound, trials=o["trials"], startup=o["startup"], k=o["k"], c=o["c"],
                    alpha=o["alpha"], prune_clusters=o["prune_clusters"], cluster_bits=o["cluster_bits"],
                    scale=o["scale"], accept=accept, seed=run.seed)

    def finish(result) -> None:
        sensitivity.write_sensitivity(result.run_dir, traces, {
            "per_parameter": per_param, "pruned": {g: list(p) for g, p in result.pruned.items()}})
        if run.verbose:
            print("ctpe pruned bits: " + ", ".join(f"{g} {list(p)}" for g, p in result.pruned.items()))

    return Plan(strategy, {"sensitivity": traces}, finish)


def _traces(problem: Problem, o: dict, run: RunContext):
    """The Hessian traces of the float model (or ``o["sensitivity"]``)."""
    return sensitivity.traces_for(problem.model, problem.train, sensitivity=o["sensitivity"],
                                  sensitivity_data=o["sensitivity_data"], num_probes=o["num_probes"],
                                  num_samples=o["num_samples"], seed=run.seed)


register(StrategyEntry(
    NSGA2.name, "the accuracy / cost Pareto front (NSGA-II, Šafář)", _make_nsga2,
    options=(Option("population", 16, Flag("", type="positive_int")),
             Option("offspring", 16, Flag("", type="positive_int")),
             Option("generations", 10, Flag("", type="non_negative_int")),
             Option("init", "uniform"), Option("crossover", "uniform"), Option("crossover_prob", 0.9),
             Option("mutation", "one_gene"), Option("mutation_prob", 0.1), SEED_ILP, SENSITIVITY, SEED_BUDGETS,
             SEED_KINDS)))
register(StrategyEntry(
    BBPSO.name, "the most accurate policy under --budget (BBPSO-Quantizer, Tmamna et al. 2024)", _make_bbpso,
    options=(Option("swarm", 15, Flag("", type="positive_int")),
             Option("iterations", 20, Flag("", type="non_negative_int")),
             Option("init", "ligpi", Flag("", choices=INITS)), Option("screening", True),
             Option("local_search", True), Option("gamma", 5), Option("R", 2), Option("kernels", None),
             Option("importance", None), SEED_ILP, SENSITIVITY),
    defaults={"epochs": 2, "search_activations": True}, constrained=True))
register(StrategyEntry(
    ILP.name, "Hessian traces + an integer linear program (HAWQ-V3): its best allocations under --budget, scored",
    _make_ilp, options=(Option("solutions", 4, Flag("the optimal and next-best allocations scored",
                                                      type="positive_int")),
                        Option("generations", 0)) + HESSIAN,
    constrained=True, budget="weight_bytes", target=None, weights_only=True))
register(StrategyEntry(
    CTPE.name, "Hessian-pruned bits + k-means TPE under --budget (Azizi et al. 2023)", _make_ctpe,
    options=(Option("trials", 40, Flag("configurations scored (a quarter of them random first)",
                                       type="positive_int")),
             Option("startup", None), Option("k", DEFAULT_K), Option("c", DEFAULT_C), Option("alpha", DEFAULT_ALPHA),
             Option("prune_clusters", DEFAULT_K), Option("cluster_bits", None), Option("scale", "log")) + HESSIAN,
    constrained=True, budget="weight_bytes", target=None, weights_only=True))
register(StrategyEntry(
    Exhaustive.name, "every policy of a small space (--bits)", _make_exhaustive,
    options=(Option("batch_size_search", 64), Option("max_size", 4096)),
    defaults={"evaluation": "ptq"}))
register(StrategyEntry(
    GA.name, "the GA baseline of BBPSO-Quantizer's Table 10 under --budget", _make_ga,
    options=(Option("population", 15), Option("generations", 20), Option("crossover_prob", 0.9),
             Option("mutation_gene_prob", None)),
    defaults={"epochs": 2, "search_activations": True}, constrained=True, cli=False))
