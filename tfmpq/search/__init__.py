"""Mixed-precision policy search: a space, an evaluator, a strategy on a shared engine, a result.

The pieces (pymoo's split): a problem (:mod:`~tfmpq.search.problem`: the :class:`SearchSpace` of a
:class:`SpaceConfig`, chromosome <-> ``QuantPolicy``; the :class:`Evaluator` of an
:class:`EvaluatorConfig`, a policy in, a scored :class:`Candidate` out; the constraint), a strategy
(``strategies/``: NSGA-II, BBPSO, GA, exhaustive, the Hessian ILP, clustered TPE, one file each) that
only proposes, the :class:`~tfmpq.search.engine.Engine` (cache, journal, checkpoint/resume, Deb's rule,
hypervolume, progress) and the :mod:`~tfmpq.search.driver` that runs them and returns a :class:`Result`.
The strategy registry (:mod:`~tfmpq.search.registry`) names each strategy, its options and defaults,
and makes it for a problem (with :mod:`~tfmpq.search.sensitivity`'s Hessian work where one needs it):
:func:`search` runs any registered strategy by name, ``nsga2``, ``bbpso``, ... are its named entry
points, and ``tfmpq search`` is generated from it. The algorithmic cores of the sensitivity-guided
strategies are pure functions: :mod:`~tfmpq.search.allocation` (the ILP and its next-best solutions)
and :mod:`~tfmpq.search.kmeans_tpe` (bit pruning, the dual threshold, Optuna's TPE). Evaluations run in
this process or, with ``executor="process"`` / ``"ray"``, on local worker processes or Ray actors
(``executors.py``). The run directory's files are :mod:`~tfmpq.search.store`'s; plots are
the report module's (the search draws none).

Example:
>>> result = tfmpq.search.nsga2(model, train=(x_tr, y_tr), val=(x_val, y_val), evaluation="qat",
...                             epochs=1, population=16, offspring=16, generations=10,
...                             run_dir="runs/fmnist", seed=0)
>>> for c in result.front: print(c.policy.genes, c.accuracy, c.weight_bytes)
>>> print(result.summary())
"""

from __future__ import annotations

from tfmpq.candidate import Candidate
from tfmpq.evaluate.config import EvaluatorConfig
from tfmpq.search.allocation import solve_allocation
from tfmpq.search.constraints import Constraint, deb_better
from tfmpq.search.driver import run, search
from tfmpq.search.engine import Engine
from tfmpq.search.entries import SANTINI_NEURON_WISE, bbpso, ctpe, exhaustive, ga, ilp, nsga2, plain_bbpso
from tfmpq.search.executors import Executor, ProcessExecutor, RayExecutor, SerialExecutor
from tfmpq.search.executors import get as get_executor
from tfmpq.search.pareto import hypervolume_2d
from tfmpq.search.problem import Problem, build_problem, make_space
from tfmpq.search.result import Result
from tfmpq.search.space import QUANT_BITS, SearchSpace, SpaceConfig
from tfmpq.search.strategies import BBPSO, CTPE, GA, ILP, NSGA2, Exhaustive, Strategy

__all__ = [
    "nsga2", "exhaustive", "run", "search", "Evaluator", "EvaluatorConfig", "Candidate", "SearchSpace",
    "SpaceConfig", "Result", "Constraint", "deb_better", "Engine", "Strategy", "NSGA2", "Exhaustive",
    "hypervolume_2d", "make_space", "build_problem", "Problem", "bbpso", "plain_bbpso", "ga", "BBPSO", "GA",
    "Executor", "SerialExecutor", "ProcessExecutor", "RayExecutor", "get_executor", "ilp", "ctpe", "ILP", "CTPE",
    "solve_allocation", "QUANT_BITS", "SANTINI_NEURON_WISE",
]


def __getattr__(name):
    """``tfmpq.search.Evaluator`` (and ``EvaluatorSpec``) load TensorFlow only when asked for."""
    if name in ("Evaluator", "EvaluatorSpec"):
        import tfmpq.evaluate as evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module 'tfmpq.search' has no attribute {name!r}")
