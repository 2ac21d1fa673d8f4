"""Run directories written by tfmpq before issue 26 moved the search internals still resume (and finish as the
uninterrupted run did): the journal format, the checkpoint and every signature are unchanged.

The directories under ``data/pre_refactor/`` were written at commit ae66179 (see its README.md); the same
searches, run again here through today's entry points, resume them.
"""
import importlib.util
import json
import pathlib
import shutil

import pytest

from search_fakes import FakeEvaluator

DATA = pathlib.Path(__file__).parent / "data"
OLD = DATA / "pre_refactor"
EXPECTED = json.loads((OLD / "expected.json").read_text())


def _searches():
    spec = importlib.util.spec_from_file_location("make_pre_refactor_runs", DATA / "make_pre_refactor_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKER = _searches()


def _copy(name, tmp_path) -> pathlib.Path:
    run_dir = tmp_path / name
    shutil.copytree(OLD / name, run_dir)
    return run_dir


@pytest.mark.parametrize("name", sorted(MAKER.SEARCHES))
def test_a_run_killed_under_the_old_code_resumes_to_the_uninterrupted_result(name, tmp_path):
    run_dir = _copy(name, tmp_path)
    signature = json.loads((run_dir / "run.json").read_text())
    ev = FakeEvaluator()
    result = MAKER.SEARCHES[name](ev, run_dir=run_dir, resume=True, verbose=0)
    want = EXPECTED[name]
    assert MAKER.fingerprint(result) == {k: want[k] for k in ("candidates", "front", "best", "population")}
    # only what the old run had not journaled is evaluated, and the problem's signature is the very same
    assert len(ev.evaluated) == want["evaluations"] - want["evaluated_before_the_kill"] > 0
    assert json.loads((run_dir / "run.json").read_text()) == signature


def test_a_finished_old_run_resumes_to_nothing_and_the_same_outputs(tmp_path):
    run_dir = _copy("nsga2_finished", tmp_path)
    front = json.loads((run_dir / "front.json").read_text())
    ev = FakeEvaluator()
    result = MAKER.SEARCHES["nsga2"](ev, run_dir=run_dir, resume=True, verbose=0)
    assert ev.evaluated == [] and result.num_cached == 0
    assert MAKER.fingerprint(result)["front"] == EXPECTED["nsga2"]["front"]
    assert json.loads((run_dir / "front.json").read_text()) == front  # front.json is rewritten byte for byte


def test_an_old_run_is_read_back_by_the_report(tmp_path):
    from tfmpq.report import load_run, summary_text

    run_dir = _copy("nsga2_finished", tmp_path)
    run = load_run(run_dir)
    assert [list(c.genes) for c in run.front] == EXPECTED["nsga2"]["front"]
    assert summary_text(run).startswith(f"run {run_dir}: nsga2")
