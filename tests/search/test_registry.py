"""The strategy registry: the one table the entry points, the command line and its help come from.

A toy strategy, registered here, shows what adding a strategy takes: its own class and one entry.
"""
import ast
import pathlib

import pytest

import tfmpq.search
from search_fakes import FakeEvaluator
from tfmpq import cli
from tfmpq.options import Flag, Option
from tfmpq.search import SearchSpace, driver, registry
from tfmpq.search.problem import EVALUATOR_OPTIONS, SPACE_OPTIONS
from tfmpq.search.strategies.base import Ask, Strategy

SPACE = SearchSpace(("a", "b", "c"), bits=(2, 4, 8))
SEARCH = pathlib.Path(tfmpq.search.__file__).parent


class Toy(Strategy):
    """Scores the uniform policies, then ``rounds`` random chromosomes per generation."""

    name = "toy"

    def __init__(self, rounds: int = 2, generations: int = 1):
        self.rounds, self.generations = rounds, generations

    def options(self) -> dict:
        return {"rounds": self.rounds}

    def start(self, view):
        yield Ask(view.space.uniform_chromosomes(), desc="toy 0")
        return {}

    def step(self, view, state, generation):
        yield Ask([view.space.random(view.rng) for _ in range(self.rounds)], desc=f"toy {generation}")
        return {}


@pytest.fixture
def toy():
    entry = registry.register(registry.StrategyEntry(
        "toy", "uniform policies, then random ones", lambda problem, o, run: Toy(o["rounds"], o["generations"]),
        options=(Option("rounds", 2, Flag("random chromosomes per generation", type="positive_int")),
                 Option("generations", 1))))
    yield entry
    del registry.REGISTRY["toy"]


def test_a_registered_strategy_is_a_search_and_a_command_line_option(toy):
    result = tfmpq.search.search("toy", evaluator=FakeEvaluator(), space=SPACE, rounds=3, generations=2, verbose=0)
    assert result.strategy == "toy" and len(result.history) == 3 and len(result.candidates) >= 3
    parser = cli.build_parser()
    search = parser._subparsers._group_actions[0].choices["search"]
    assert "toy" in next(a for a in search._actions if a.dest == "strategy").choices
    assert "random chromosomes per generation" in search.format_help()
    args = parser.parse_args(["search", "zoo:small_cnn_fmnist", "--strategy", "toy", "--rounds", "5", "-o", "r"])
    opts = cli._search_options(args)
    assert opts["rounds"] == 5 and cli._search_kwargs(args, opts, model=None)["rounds"] == 5
    with pytest.raises(TypeError, match=r"Unknown search options: \['round'\]"):
        tfmpq.search.search("toy", evaluator=FakeEvaluator(), space=SPACE, round=3)


def test_the_command_line_lists_the_registry():
    search = cli.build_parser()._subparsers._group_actions[0].choices["search"]
    strategy = next(a for a in search._actions if a.dest == "strategy")
    assert strategy.choices == registry.names(cli=True) == ("nsga2", "bbpso", "ilp", "ctpe", "exhaustive")
    assert set(registry.names()) == {"nsga2", "bbpso", "ilp", "ctpe", "exhaustive", "ga"}
    flags = {a.dest for a in search._actions}
    for name in registry.names(cli=True):
        assert {o.dest for o in registry.get(name).options if o.flag} <= flags, name
    assert "Default: 1 (nsga2, ilp, ctpe, exhaustive), 2 (bbpso)" in " ".join(search.format_help().split())


@pytest.mark.parametrize("name", sorted(registry.names()))
def test_every_entry_point_hands_every_space_and_evaluator_option_to_the_one_problem_builder(name, monkeypatch):
    """The bug class of issue 26 (an option one entry point forwards and another drops) cannot recur: every
    registered strategy, by name and by its named function, passes each option to build_problem as given."""
    seen = {}

    class Built(Exception):
        pass

    def build_problem(model=None, train=None, val=None, **options):
        seen.update(options)
        raise Built

    monkeypatch.setattr(driver, "build_problem", build_problem)
    given = {"bits": (4, 8), "activation_bits": 6, "activation_choices": (4, 8), "overrides": {"a": (8,)},
             "pinned": {"b": 8}, "pin_first_last": True, "evaluation": "oneshot", "epochs": 3, "batch_size": 32,
             "per_channel": False, "symmetric": False, "optimizer": "sgd", "learning_rate": 3e-3,
             "calibration_batches": 2, "bn_freeze_step": 5, "bn_fold": "two_conv", "reuse_model": False,
             "distill": True, "num_random_policies": 1, "oneshot_bits": (4, 8), "oneshot_activation_bits": (8,),
             "oneshot_learning_rate": 1e-3, "granularity": "channel", "channel_clusters": 3,
             "channel_ranking": "hessian", "channel_order": {"a": (1, 0)}, "prune_channels": True}
    assert set(given) == (set(SPACE_OPTIONS) | set(EVALUATOR_OPTIONS)) - {"search_activations"}
    entry = registry.get(name)
    budget = {"target": 1e4} if entry.constrained else {}
    for search in (lambda **kw: tfmpq.search.search(name, **kw), getattr(tfmpq.search, name)):
        seen.clear()
        with pytest.raises(Built):
            search(**given, **budget, verbose=0)
        assert {k: seen[k] for k in given} == given


def test_strategies_hold_strategies_only():
    """strategies/ imports neither the package's entry nor another strategy's private names, nor the
    driver, the registry, the problem builder or the sensitivity code."""
    allowed = {"tfmpq.search.strategies.base", "tfmpq.search.constraints", "tfmpq.search.tables",
               "tfmpq.search.allocation", "tfmpq.search.kmeans_tpe", "tfmpq.search.importance"}
    for path in (SEARCH / "strategies").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfmpq"):
                if path.name == "__init__.py":
                    continue
                assert node.module in allowed, f"{path.name} imports {node.module}"
                assert not any(a.name.startswith("_") for a in node.names), f"{path.name} imports a private name"


def _tfmpq_import_graph() -> dict:
    """Module -> the tfmpq modules it imports when loaded (imports at module level, not inside functions)."""
    root = SEARCH.parent
    modules = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.parse(path.read_text()).body:
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            for target in targets:
                if target in modules and not (path.name == "__init__.py" and target.startswith(name + ".")):
                    edges.add(target)
        graph[name] = edges
    return graph


def test_no_import_cycle_in_tfmpq():
    graph = _tfmpq_import_graph()
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
