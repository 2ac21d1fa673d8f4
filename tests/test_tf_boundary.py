"""Issue 18: `import tfmpq.search`, `import tfmpq.report` and reading a run directory need no TensorFlow; nor do
the ILP and clustered TPE strategies (issue 15) given their tables, nor the evaluator's and the space's
configurations (issue 26).

A subprocess blocks every TensorFlow / Keras / tfmot import (an import hook that raises), then runs a
search with an evaluator of its own, reads the run back and reports it.
"""
import json
import os
import subprocess
import sys

SCRIPT = r'''
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    BLOCKED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"blocked for this test: {name}")
        return None

sys.meta_path.insert(0, Block())
sys.path[:0] = [sys.argv[2]]
import tfmpq, tfmpq.search, tfmpq.report, tfmpq.policy, tfmpq.metrics, tfmpq.candidate, tfmpq.stats
import tfmpq.evaluate, tfmpq.options, tfmpq.search.registry
# the configurations and the problem builder's sorting of options need no TensorFlow (the Evaluator does)
configs = [tfmpq.evaluate.EvaluatorConfig(evaluation="oneshot").to_json(), tfmpq.search.SpaceConfig(bits=(4, 8)).to_json()]
from search_fakes import FakeEvaluator
from tfmpq.search import SearchSpace, nsga2, bbpso
from tfmpq.report import load_run, summary_text, write_report

space = SearchSpace(("a", "b", "c"), bits=(2, 4, 8))
result = nsga2(evaluator=FakeEvaluator(), space=space, population=4, offspring=4, generations=2, seed=0,
               run_dir=sys.argv[1] + "/nsga2", verbose=0)
bbpso(evaluator=FakeEvaluator(), space=SearchSpace(("a", "b", "c"), bits=(2, 4, 8), search_activations=True),
      kernels=None, init="random", swarm=4, iterations=2, run_dir=sys.argv[1] + "/bbpso", verbose=0)
# the sensitivity-guided strategies (scipy's milp, Optuna's TPE) need no TensorFlow either, given their tables
from search_fakes import PARAMS, SENSITIVITY
from tfmpq.search import CTPE, ILP, run as run_strategy
omega = {g: {b: s / 2 ** b for b in (2, 4, 8)} for g, s in zip("abc", SENSITIVITY)}
costs = {g: {b: p * b / 8 for b in (2, 4, 8)} for g, p in zip("abc", PARAMS)}
budget = sum(PARAMS) * 6 / 8
by_ilp = run_strategy(ILP(omega, costs, budget, solutions=2), evaluator=FakeEvaluator(), space=space, verbose=0)
by_tpe = run_strategy(CTPE({g: s / p for g, s, p in zip("abc", SENSITIVITY, PARAMS)}, costs, budget, trials=5,
                           startup=3, prune_clusters=1), evaluator=FakeEvaluator(), space=space, verbose=0)
guided = [len(by_ilp.candidates), len(by_tpe.candidates)]
run = load_run(sys.argv[1] + "/nsga2")
text, files = write_report(run, plots=True)
try:
    tfmpq.search.Evaluator
except ImportError as e:
    lazy = str(e)
else:
    lazy = None
loaded = sorted(m for m in sys.modules if m.split(".")[0] in Block.BLOCKED)
print("RESULT " + __import__("json").dumps({"front": len(result.front), "run_front": len(run.front),
      "summary": summary_text(run)[:40], "files": len(files), "loaded": loaded, "lazy": lazy, "guided": guided,
      "configs": len(configs)}))
'''


def test_search_and_report_work_with_tensorflow_blocked(tmp_path):
    here = os.path.join(os.path.dirname(__file__), "search")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), here], capture_output=True, text=True,
                          cwd=root, timeout=600, env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    assert out["loaded"] == []  # no TensorFlow, Keras or tfmot module was imported
    assert out["front"] > 0 and out["run_front"] == out["front"] and out["files"] >= 2
    assert out["lazy"] is not None and "blocked for this test" in out["lazy"]  # the Evaluator is the boundary
    assert out["guided"] == [2, 5]  # the ILP's two best allocations, clustered TPE's five trials
    assert out["configs"] == 2
