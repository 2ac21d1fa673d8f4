"""Writes the run directories under ``pre_refactor/`` that ``test_old_run_dirs.py`` resumes.

They were written by tfmpq at commit ae66179 (before issue 26 moved the search internals), so the test
proves that a run directory of that version still resumes: each search is killed half-way (a journal, a
checkpoint and ``run.json``, no outputs) and ``expected.json`` holds what the uninterrupted run found.
Pure Python (``search_fakes.FakeEvaluator``): the same files on any machine.

    cd tests/search && python data/make_pre_refactor_runs.py
"""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from search_fakes import PARAMS, SENSITIVITY, FakeEvaluator  # noqa: E402
from tfmpq.search import CTPE, ILP, Exhaustive, SearchSpace, bbpso, ga, nsga2, run  # noqa: E402

SPACE = SearchSpace(("a", "b", "c"), bits=(2, 4, 8))
SPACE_ACT = SearchSpace(("a", "b", "c"), bits=(2, 4, 8), search_activations=True)
OMEGA = {g: {b: s / 2 ** b for b in (2, 4, 8)} for g, s in zip("abc", SENSITIVITY)}
BYTES = {g: {b: p * b / 8 for b in (2, 4, 8)} for g, p in zip("abc", PARAMS)}
BUDGET = sum(PARAMS) * 6 / 8
IMPORTANCE = (0.4, 0.9, 0.2)

#: name -> a search taking (evaluator, **run options): the searches of every strategy, through the
#: entry points where a user calls one.
SEARCHES = {
    "nsga2": lambda ev, **kw: nsga2(evaluator=ev, space=SPACE, population=6, offspring=6, generations=4, seed=3,
                                    **kw),
    "bbpso": lambda ev, **kw: bbpso(evaluator=ev, space=SPACE_ACT, importance=IMPORTANCE, swarm=6, iterations=4,
                                    target=3.5, float_accuracy=0.97, seed=3, **kw),
    "ga": lambda ev, **kw: ga(evaluator=ev, space=SPACE_ACT, population=6, generations=4, target=3.5,
                              float_accuracy=0.97, seed=3, **kw),
    "exhaustive": lambda ev, **kw: run(Exhaustive(batch_size=6), evaluator=ev, space=SPACE, seed=3, **kw),
    "ilp": lambda ev, **kw: run(ILP(OMEGA, BYTES, BUDGET, solutions=2, generations=4), evaluator=ev, space=SPACE,
                                seed=3, constraint=("weight_bytes", BUDGET), **kw),
    "ctpe": lambda ev, **kw: run(CTPE({g: s / p for g, s, p in zip("abc", SENSITIVITY, PARAMS)}, BYTES, BUDGET,
                                      trials=8, startup=4, prune_clusters=1), evaluator=ev, space=SPACE, seed=3,
                                 **kw),
}


def fingerprint(result) -> dict:
    return {"candidates": [[list(c.genes), c.accuracy] for c in result.candidates],
            "front": [list(c.genes) for c in result.front],
            "best": None if result.best is None else list(result.best.genes),
            "population": [list(c.genes) for c in result.population]}


def main(out: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    expected = {}
    for name, search in SEARCHES.items():
        full_ev = FakeEvaluator()
        full = search(full_ev, verbose=0)
        expected[name] = dict(fingerprint(full), evaluations=len(full_ev.evaluated))
        killed = FakeEvaluator(interrupt_after=len(full_ev.evaluated) // 2 + 1)
        try:
            search(killed, run_dir=os.path.join(out, name), verbose=0)
        except KeyboardInterrupt:
            pass
        expected[name]["evaluated_before_the_kill"] = len(killed.evaluated)
    finished = os.path.join(out, "nsga2_finished")
    search = SEARCHES["nsga2"]
    search(FakeEvaluator(), run_dir=finished, verbose=0)
    for root, _, files in os.walk(out):
        for f in files:
            if f in (".lock", "pareto.png", "hypervolume.png", "convergence.png"):
                os.unlink(os.path.join(root, f))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main(os.path.join(HERE, "pre_refactor"))
