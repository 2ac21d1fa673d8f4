"""Run directories that cannot be mixed up or torn (issue 13): fingerprints, a torn journal line, a lock."""
import json
import signal
import subprocess
import sys

import pytest
from search_fakes import FakeEvaluator

from tfmpq.errors import CheckpointError
from tfmpq.search import SearchSpace, nsga2
from tfmpq.search.store import RunStore

SPACE = SearchSpace(("a", "b", "c"), bits=(2, 4, 8))


def _copy_with_weights(model, change):
    from tfmpq._keras import keras

    clone = keras.models.clone_model(model)
    weights = [w.copy() for w in model.get_weights()]
    change(weights)
    clone.set_weights(weights)
    return clone


@pytest.fixture()
def small_run(digits_mlp, digits, tmp_path):
    (x, y), (xv, yv) = digits
    data = ((x[:400], y[:400]), (xv[:200], yv[:200]))
    kw = dict(evaluation="ptq", population=4, offspring=4, generations=1, seed=0, verbose=0, bits=(2, 4, 8),
              run_dir=tmp_path / "run")
    nsga2(digits_mlp, *data, **kw)
    return data, kw


def _bump_first_weight(weights):
    weights[0][0, 0] += 0.5


@pytest.mark.parametrize("what, words", [
    ("weights", r"the model's weights \(evaluator\.weights_sha1\)"),
    ("data", r"the training or validation data \(evaluator\.data_sha1\)"),
    ("shapes", r"the shapes of the training or validation data \(evaluator\.data_shapes\.val\): stored \[\[200, 8, 8, 1\], \[200\]\], now \[\[150"),
    ("epochs", r"the evaluation mode \(evaluator\.evaluation\): stored 'ptq', now 'qat'"),
    ("space", r"the search space \(space\."),
])
def test_resuming_with_anything_different_names_it(small_run, digits_mlp, what, words):
    (train, val), kw = small_run
    model = digits_mlp
    kw = dict(kw, resume=True)
    if what == "weights":
        model = _copy_with_weights(digits_mlp, _bump_first_weight)
    elif what == "data":
        train = (train[0][::-1].copy(), train[1][::-1].copy())  # same images, another order
    elif what == "shapes":
        val = (val[0][:150], val[1][:150])
    elif what == "epochs":
        kw["evaluation"] = "qat"
    elif what == "space":
        kw["bits"] = (2, 8)
    with pytest.raises(CheckpointError, match=rf"run\.json`: it was made by another search problem\. What differs: .*{words}"):
        nsga2(model, train, val, **kw)


def test_resuming_the_same_problem_evaluates_nothing(small_run, digits_mlp):
    (train, val), kw = small_run
    again = nsga2(digits_mlp, train, val, **dict(kw, resume=True))
    assert again.num_evaluated == 0


def test_a_torn_last_journal_line_costs_that_one_candidate(tmp_path):
    kw = dict(space=SPACE, population=6, offspring=6, generations=2, seed=4, verbose=0)
    reference = nsga2(evaluator=FakeEvaluator(), run_dir=tmp_path / "ref", **kw)
    total = len(reference.candidates)
    run = tmp_path / "killed"
    run.mkdir()
    lines = (tmp_path / "ref" / "evaluations.jsonl").read_text().splitlines(keepends=True)
    keep = 8  # killed while writing the 9th record: 8 complete lines and half of the 9th
    (run / "evaluations.jsonl").write_text("".join(lines[:keep]) + lines[keep][: len(lines[keep]) // 2])
    (run / "run.json").write_text((tmp_path / "ref" / "run.json").read_text())  # no checkpoint: gen 0 unfinished
    ev = FakeEvaluator()
    resumed = nsga2(evaluator=ev, run_dir=run, resume=True, **kw)
    torn = tuple(json.loads(lines[keep])["genes"])
    assert torn in {e[: len(torn)] for e in ev.evaluated}  # the torn one is evaluated again ...
    assert resumed.num_evaluated == total - keep  # ... and nothing that was complete
    assert [(c.genes, c.accuracy) for c in resumed.candidates] == [(c.genes, c.accuracy) for c in reference.candidates]
    assert len((run / "evaluations.jsonl").read_text().splitlines()) == total


_HOLDER = """
import sys
from tfmpq.search.store import RunStore
store = RunStore(sys.argv[1], lock=True)
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_process_on_the_same_run_dir_is_refused(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # an event, not a sleep
        with pytest.raises(CheckpointError, match=rf"`.*run` is in use by another search \(process {holder.pid}\)"):
            nsga2(evaluator=FakeEvaluator(), space=SPACE, population=4, offspring=4, generations=1, run_dir=run,
                  verbose=0)
        assert not (run / "evaluations.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder leaves no stale lock behind
        holder.wait()
    result = nsga2(evaluator=FakeEvaluator(), space=SPACE, population=4, offspring=4, generations=1, run_dir=run,
                   verbose=0)
    assert result.num_evaluated > 0


def test_the_lock_is_released_when_a_search_ends_or_fails(tmp_path):
    kw = dict(space=SPACE, population=4, offspring=4, generations=1, run_dir=tmp_path, verbose=0)
    nsga2(evaluator=FakeEvaluator(), **kw)
    with pytest.raises(CheckpointError, match="already holds a search run"):  # refused, and unlocked again
        nsga2(evaluator=FakeEvaluator(), **kw)
    store = RunStore(tmp_path, resume=True, lock=True)
    assert store.locked
    store.close()
    assert not store.locked
    assert nsga2(evaluator=FakeEvaluator(), resume=True, **kw).num_evaluated == 0


def test_unusable_run_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"Cannot use `.*file/run` as the run directory"):
        RunStore(blocker / "run")


def test_a_full_disk_stops_the_search_and_the_run_resumes(tmp_path, monkeypatch):
    import errno

    from tfmpq.search import store as store_module

    kw = dict(space=SPACE, population=6, offspring=6, generations=2, seed=4, verbose=0)
    reference = nsga2(evaluator=FakeEvaluator(), **kw)
    real_open = open
    writes = []

    class FullDisk:  # the 6th journal line gets half written, then the device is full
        def __init__(self, path, *a, **k):
            self.f = real_open(path, *a, **k)
            self.journal = str(path).endswith("evaluations.jsonl")

        def write(self, text):
            if not self.journal:
                return self.f.write(text)
            writes.append(text)
            if len(writes) == 6:
                self.f.write(text[: len(text) // 2])
                self.f.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(text)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(store_module, "open", FullDisk, raising=False)
    with pytest.raises(CheckpointError, match=r"Cannot write to the journal `.*evaluations\.jsonl`: No space left on "
                                              r"device\. The search stopped"):
        nsga2(evaluator=FakeEvaluator(), run_dir=tmp_path, **kw)
    monkeypatch.undo()
    resumed = nsga2(evaluator=FakeEvaluator(), run_dir=tmp_path, resume=True, **kw)
    assert resumed.num_evaluated == len(reference.candidates) - 5  # the 5 complete lines are kept
    assert [(c.genes, c.accuracy) for c in resumed.front] == [(c.genes, c.accuracy) for c in reference.front]


_KILLED_SEARCH = """
import sys
sys.path[:0] = sys.argv[2:]
from search_fakes import FakeEvaluator
from tfmpq.search import SearchSpace, nsga2

class Slow(FakeEvaluator):
    def evaluate(self, policy):
        import time
        time.sleep(0.05)
        return super().evaluate(policy)

nsga2(evaluator=Slow(), space=SearchSpace(("a", "b", "c"), bits=(2, 4, 8)), population=6, offspring=6,
      generations=2, seed=4, verbose=0, run_dir=sys.argv[1])
"""


def test_kill_9_during_a_search_then_resume(tmp_path):
    import os
    import time

    kw = dict(space=SPACE, population=6, offspring=6, generations=2, seed=4, verbose=0)
    reference = nsga2(evaluator=FakeEvaluator(), **kw)
    run, journal = tmp_path / "run", tmp_path / "run" / "evaluations.jsonl"
    here = os.path.dirname(__file__)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SEARCH, str(run), here, os.path.dirname(here)])
    try:
        deadline = time.monotonic() + 1800  # a guard against a hang only: TF imports take minutes under load
        while not (journal.exists() and len(journal.read_text().splitlines()) >= 7):  # an event: the 7th line
            assert proc.poll() is None and time.monotonic() < deadline, "the search ended before it was killed"
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    done = len(journal.read_text().splitlines())
    assert 7 <= done < len(reference.candidates)
    resumed = nsga2(evaluator=FakeEvaluator(), run_dir=run, resume=True, **kw)
    assert resumed.num_evaluated == len(reference.candidates) - done
    assert [(c.genes, c.accuracy) for c in resumed.candidates] == [(c.genes, c.accuracy) for c in reference.candidates]
