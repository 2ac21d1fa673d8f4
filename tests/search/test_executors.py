"""Executors: local worker processes and Ray actors run the same search as the serial default; a
worker that dies has its candidate retried (then recorded as failed); Ctrl-C leaves a resumable run."""
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time

import pytest
from search_fakes import DyingEvaluator, FakeEvaluator

from tfmpq.errors import ExecutorError
from tfmpq.evaluate import Candidate, Evaluator
from tfmpq.policy import QuantPolicy
from tfmpq.search import (Engine, ProcessExecutor, SearchSpace, SerialExecutor, exhaustive, get_executor,
                          nsga2)

SPACE = SearchSpace(("a", "b", "c"), bits=(2, 4, 8))


def fingerprint(result):
    """What must not depend on the executor: the front, the best, and every candidate's score."""
    scores = sorted((c.genes, c.status, c.accuracy, c.metrics.get("weight_bytes")) for c in result.candidates)
    return [(c.genes, c.accuracy) for c in result.front], result.best.genes, scores


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(condition, timeout=1800.0):
    """Polls ``condition`` until it holds. The timeout only guards against a hang: on a loaded 2-core
    machine, spawning workers that import TensorFlow has taken minutes (measured: over 120 s)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


# ------------------------------------------------------------------------------------ no workers
def test_get_executor_by_name_and_its_errors():
    assert isinstance(get_executor("serial"), SerialExecutor)
    assert isinstance(get_executor(None), SerialExecutor)
    assert get_executor("process", workers=3).workers == 3
    custom = SerialExecutor()
    assert get_executor(custom) is custom
    with pytest.raises(ValueError, match=r"Invalid value for `executor`: expected one of \('serial', 'process', 'ray'\)"):
        get_executor("threads")
    with pytest.raises(ValueError, match="executor='serial' runs one evaluation at a time; `workers=2`"):
        get_executor("serial", workers=2)
    with pytest.raises(ValueError, match="`ray_address` and `gpus_per_worker` need executor='ray'"):
        get_executor("process", ray_address="auto")
    with pytest.raises(ValueError, match="Invalid value for `workers`: expected an integer >= 1. Received: workers=0"):
        get_executor("process", workers=0)
    with pytest.raises(ValueError, match="Invalid value for `max_retries`"):
        ProcessExecutor(2, max_retries=-1)


def test_ray_without_ray_installed_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"Ray is not installed: `pip install tfmpq\[ray\]`"):
        get_executor("ray")
    with pytest.raises(ImportError, match=r"pip install tfmpq\[ray\]"):
        nsga2(evaluator=FakeEvaluator(), space=SPACE, population=4, offspring=4, generations=0, verbose=0,
              executor="ray")


def test_an_evaluator_that_does_not_pickle_is_refused_before_workers_start():
    ev = FakeEvaluator(fail_when=lambda p: False)  # a lambda does not pickle
    with pytest.raises(ValueError, match=r"Cannot send the evaluator \(FakeEvaluator\) to worker processes: it does "
                                         r"not pickle .*`spec\(\)`"):
        nsga2(evaluator=ev, space=SPACE, population=4, offspring=4, generations=0, verbose=0, executor="process",
              workers=2)


def test_evaluator_spec_rebuilds_an_evaluator_that_scores_identically(digits_mlp, digits):
    (x, y), _ = digits
    ev = Evaluator(digits_mlp, (x[:600], y[:600]), (x[1200:], y[1200:]), evaluation="ptq", seed=3)
    clone = pickle.loads(pickle.dumps(ev.spec()))()
    assert clone.signature() == ev.signature()  # same weights, data and options
    for bits in ((8, 8), (4, 8), (2, 3)):
        policy = QuantPolicy(("hidden", "out"), bits, (8, 8))
        assert clone.evaluate(policy).accuracy == ev.evaluate(policy).accuracy


def test_evaluator_spec_refuses_a_dataset(digits_mlp, digits):
    from tfmpq._keras import tf

    (x, y), _ = digits
    train = tf.data.Dataset.from_tensor_slices((x[:256], y[:256])).batch(64)
    ev = Evaluator(digits_mlp, train, (x[1200:], y[1200:]), evaluation="ptq")
    with pytest.raises(ValueError, match=r"`train` and `val` must be \(x, y\) arrays, not tf.data.Dataset"):
        ev.spec()


def test_configure_tensorflow_says_when_it_comes_too_late():
    from tfmpq._keras import tf
    from tfmpq.evaluate import configure_tensorflow

    tf.constant(1.0) + 1.0  # TensorFlow has run an op in this process: its thread pools are fixed
    current = tf.config.threading.get_intra_op_parallelism_threads()
    with pytest.warns(RuntimeWarning, match=r"configure_tensorflow\(threads=\d+\) has no effect"):
        assert configure_tensorflow(threads=current + 3) is False
    assert tf.config.threading.get_intra_op_parallelism_threads() == current


def test_best_does_not_depend_on_the_order_of_completion():
    engine = Engine(SPACE, FakeEvaluator(), verbose=0)
    ties = [Candidate(SPACE.decode(g), 0.9, {"weight_bytes": w}, genes=g)
            for w, g in ((30.0, (8, 8, 8)), (20.0, (4, 4, 8)), (20.0, (4, 4, 4)))]
    assert engine.best(ties).genes == engine.best(ties[::-1]).genes == (4, 4, 4)


# ---------------------------------------------------------------------------- local worker processes
def test_process_workers_give_the_serial_front(digits_mlp, digits):
    (x, y), _ = digits
    kw = dict(evaluation="ptq", population=6, offspring=6, generations=2, seed=0, verbose=0, bits=(2, 4, 6, 8))
    data = ((x[:1000], y[:1000]), (x[1200:], y[1200:]))
    serial = nsga2(digits_mlp, *data, **kw)
    parallel = nsga2(digits_mlp, *data, executor="process", workers=2, **kw)
    assert fingerprint(parallel) == fingerprint(serial)
    assert parallel.num_evaluated == serial.num_evaluated


def test_dead_workers_are_replaced_and_their_candidates_retried_then_given_up(tmp_path):
    space = SearchSpace(("a", "b", "c"), bits=(2, 4, 8))
    serial = exhaustive(evaluator=FakeEvaluator(), space=space, verbose=0)
    ev = DyingEvaluator(tmp_path, die_once=[(8, 8, 8)], die_always=[(2, 2, 2)], delay=0.02)
    executor = ProcessExecutor(2, max_retries=1)
    with pytest.warns(RuntimeWarning, match=r"A tfmpq worker process died \(exit code 9\); it was replaced"):
        result = exhaustive(evaluator=ev, space=space, verbose=0, executor=executor, run_dir=tmp_path / "run")
    executor.close()
    assert executor.stats == {"retried": 2, "lost": 1, "replaced": 3}
    assert len(result.candidates) == 27  # the search finished; every chromosome is in the journal once
    journal = (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()
    assert len(journal) == 27
    failed = [c for c in result.candidates if not c.ok]
    assert [c.genes for c in failed] == [(2, 2, 2)]
    assert failed[0].error == "WorkerLost: the worker evaluating it died 2 times (last exit code 9)"
    expected = {c.genes: c.accuracy for c in serial.candidates}
    assert all(c.accuracy == expected[c.genes] for c in result.candidates if c.ok)  # (8, 8, 8) included


def test_an_evaluator_error_on_a_worker_is_a_failed_candidate_not_a_retry(tmp_path):
    space = SearchSpace(("a", "b", "c"), bits=(4, 8))
    ev = DyingEvaluator(tmp_path, raise_on=[(4, 8, 4), (8, 8, 8)])
    executor = ProcessExecutor(2)
    with pytest.warns(UserWarning, match=r"Evaluation of \(4, 8, 4\) failed and is recorded as failed"):
        result = exhaustive(evaluator=ev, space=space, verbose=1, executor=executor)
    assert executor.stats == {"retried": 0, "lost": 0, "replaced": 0}
    failed = sorted((c.genes, c.error) for c in result.candidates if not c.ok)
    assert failed == [((4, 8, 4), "RuntimeError: simulated crash on (4, 8, 4)"),
                      ((8, 8, 8), "RuntimeError: simulated crash on (8, 8, 8)")]
    assert failed[0][0] not in [c.genes for c in result.front] and len(result.candidates) == 8
    assert all(c.metrics["weight_bytes"] > 0 for c in result.candidates)  # failed ones keep their costs


def test_an_executor_reused_for_another_search_restarts_with_its_evaluator():
    space = SearchSpace(("a", "b", "c"), bits=(4, 8))
    gentle = FakeEvaluator(sensitivity=(0.1, 0.1, 0.1))
    with ProcessExecutor(1) as executor:
        first = exhaustive(evaluator=FakeEvaluator(), space=space, verbose=0, executor=executor)
        pid = executor.pids()[0]
        second = exhaustive(evaluator=gentle, space=space, verbose=0, executor=executor)
        assert executor.pids()[0] != pid  # the workers holding the first evaluator were replaced
    assert fingerprint(first) == fingerprint(exhaustive(evaluator=FakeEvaluator(), space=space, verbose=0))
    assert fingerprint(second) == fingerprint(exhaustive(evaluator=gentle, space=space, verbose=0))
    assert fingerprint(second) != fingerprint(first)


def test_ctrl_c_stops_the_workers_and_leaves_a_resumable_run(tmp_path):
    kw = dict(space=SPACE, population=8, offspring=8, generations=3, seed=2, verbose=0)
    reference = nsga2(evaluator=FakeEvaluator(), **kw)
    run_dir = tmp_path / "run"
    journal = run_dir / "evaluations.jsonl"
    # Events, not timing: from the 10th journal line on, the workers hold every evaluation until
    # released, so the run cannot finish before Ctrl-C arrives, however slow the machine is.
    evaluator = DyingEvaluator(tmp_path, delay=0.05, hold=(journal, 10))
    pids = []

    def press_ctrl_c():
        wait_for(evaluator.held)
        pids.extend(p.pid for p in multiprocessing.active_children())  # the search's worker processes
        os.kill(os.getpid(), signal.SIGINT)

    # A shell that starts a job in the background (`cmd &`, nohup) hands it SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler: install it, as a terminal's Ctrl-C would find it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=press_ctrl_c, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            nsga2(evaluator=evaluator, executor="process", workers=2, run_dir=run_dir, **kw)
    finally:
        signal.signal(signal.SIGINT, previous)
    (tmp_path / "release").touch()  # (had a worker survived, it would now finish and be seen below)
    assert len(pids) == 2
    wait_for(lambda: not any(alive(p) for p in pids), timeout=300)  # no orphaned workers
    done = len(journal.read_text().splitlines())
    assert 10 <= done < len(reference.candidates)
    resumed = nsga2(evaluator=FakeEvaluator(), run_dir=run_dir, resume=True, **kw)  # on another executor
    assert fingerprint(resumed) == fingerprint(reference)
    assert resumed.num_evaluated == len(reference.candidates) - done  # nothing journaled is evaluated again

# ----------------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install tfmpq[ray])")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def digits_problem(digits_mlp, digits):
    (x, y), _ = digits
    kw = dict(evaluation="ptq", population=6, offspring=6, generations=2, seed=0, verbose=0, bits=(2, 3, 4, 6, 8))
    data = ((x[:1000], y[:1000]), (x[1200:], y[1200:]))
    return data, kw, nsga2(digits_mlp, *data, **kw)


def test_ray_workers_give_the_serial_front(local_ray, digits_mlp, digits_problem):
    from tfmpq.search import RayExecutor

    data, kw, serial = digits_problem
    executor = RayExecutor(2)
    result = nsga2(digits_mlp, *data, executor=executor, **kw)
    assert len(set(executor.pids())) == 2
    executor.close()
    assert fingerprint(result) == fingerprint(serial)
    assert local_ray.is_initialized()  # a Ray the executor did not start is left running


def test_a_ray_worker_killed_mid_run_loses_nothing(local_ray, digits_mlp, digits_problem, tmp_path):
    from tfmpq.search import RayExecutor

    data, kw, serial = digits_problem
    executor = RayExecutor(2)
    killed = []

    def kill_a_busy_worker():
        # The moment a worker is handed its first candidate: that evaluation builds and traces the
        # model (over a second even on a fast machine), so the kill lands inside it.
        wait_for(lambda: executor.started and executor.busy_pids())
        pid = executor.busy_pids()[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    threading.Thread(target=kill_a_busy_worker, daemon=True).start()
    with pytest.warns(RuntimeWarning, match=r"A tfmpq Ray worker died \(.*\); it was replaced"):
        result = nsga2(digits_mlp, *data, executor=executor, run_dir=tmp_path / "run", **kw)
    pids = executor.pids()
    executor.close()
    assert killed and killed[0] not in pids
    assert executor.stats["replaced"] >= 1 and executor.stats["retried"] >= 1 and executor.stats["lost"] == 0
    assert fingerprint(result) == fingerprint(serial)  # every candidate scored, as in the serial run
    assert len((tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()) == len(serial.candidates)


def test_ray_refuses_more_gpus_than_the_cluster_has(local_ray):
    from tfmpq.search import RayExecutor

    executor = RayExecutor(1, gpus_per_worker=1)
    with pytest.raises(ExecutorError, match="gpus_per_worker=1 but the Ray cluster has 0 GPU"):
        executor.start(FakeEvaluator())
