"""Where candidate evaluations run: in this process, in local worker processes, or on Ray actors.

Candidate evaluations are independent (Šafář spread them over 8 GPUs), so the engine hands a batch
of new policies to an :class:`Executor` — the role of DEAP's ``toolbox.map`` — and records each
result as it comes back. Three executors share one contract:

* ``"serial"`` (:class:`SerialExecutor`): this process, in order; the default.
* ``"process"`` (:class:`ProcessExecutor`): N local worker processes (``spawn``), each holding its own
  TensorFlow, the data and the compiled search model.
* ``"ray"`` (:class:`RayExecutor`): one Ray actor per worker, on a local Ray or an existing cluster
  (``pip install tfmpq[ray]``).

The evaluator is shipped to each worker once: ``evaluator.spec()`` (a picklable recipe: the float
model as ``.keras`` bytes, the arrays and the options; ``tfmpq.search.Evaluator`` has one) or, for a
user's evaluator without ``spec``, the evaluator itself pickled. Ray puts it in the object store once
for all actors. Each worker then receives only policies.

Faults: a worker that dies while evaluating (killed, out of memory, a segfault in a kernel) is
replaced and its policy handed to a live worker, at most ``max_retries`` more times; after that the
policy comes back as a :class:`WorkerLost` error, which the engine records as a failed candidate. An
exception raised by the evaluator on a worker comes back as :class:`RemoteEvaluationError` (no retry:
it would fail again). ``KeyboardInterrupt`` in the driver stops the workers; the engine's journal
keeps every result that came back.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import pickle
import signal
import time
import traceback
import warnings
from multiprocessing.connection import wait as _wait_connections
from typing import Any, Iterator, Sequence

from tfmpq.candidate import Candidate
from tfmpq.errors import ExecutorError

EXECUTORS = ("serial", "process", "ray")
RAY_INSTALL_HINT = "Ray is not installed: `pip install tfmpq[ray]` (or `pip install ray`) to use executor='ray'."


class RemoteEvaluationError(Exception):
    """The evaluator raised on a worker; ``str()`` is ``"<ExceptionType>: <message>"`` from there."""


class WorkerLost(Exception):
    """Every worker that tried this policy died while evaluating it (``max_retries + 1`` attempts)."""


def describe_error(error: BaseException) -> str:
    """How a failed evaluation's error reads in the journal: ``"<Type>: <message>"``."""
    if isinstance(error, (RemoteEvaluationError, WorkerLost)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# -- what a worker receives and runs -----------------------------------------------------------
def evaluator_payload(evaluator) -> tuple[str, Any]:
    """What is shipped to workers once: ``("spec", evaluator.spec())`` or ``("object", evaluator)``."""
    spec = getattr(evaluator, "spec", None)
    if callable(spec):
        return ("spec", spec())
    return ("object", evaluator)


def _materialize(payload: tuple[str, Any]):
    kind, obj = payload
    return obj() if kind == "spec" else obj


def _configure_tensorflow(threads: int | None, use_gpu: bool = True) -> None:
    # Runs in the worker process, first thing: this is where a worker starts TensorFlow (the engine's
    # process, which only ranks and journals, never needs it).
    from tfmpq.evaluate import configure_tensorflow

    configure_tensorflow(threads, use_gpu)


def evaluate_remotely(evaluator, policy) -> tuple[str, Any, float]:
    """Runs one evaluation on a worker: ``("ok", candidate, seconds)`` or ``("error", message, seconds)``."""
    start = time.perf_counter()
    try:
        candidate = evaluator.evaluate(policy)
        if not isinstance(candidate, Candidate):
            raise TypeError(f"The evaluator must return a tfmpq.search.Candidate. Received: {type(candidate).__name__}.")
        return "ok", candidate, time.perf_counter() - start
    except Exception as e:  # a crashed candidate is a data point: it goes back to the engine
        return "error", describe_error(e), time.perf_counter() - start


def _outcome(status: str, value: Any) -> Any:
    return value if status == "ok" else RemoteEvaluationError(value)


# -- the contract ------------------------------------------------------------------------------
class Executor:
    """Evaluates batches of policies; results come back as they finish.

    Subclasses implement :meth:`start`, :meth:`map` and :meth:`close`. ``stats`` counts the faults
    handled: ``retried`` (policies handed to another worker after theirs died), ``lost`` (policies
    given up after ``max_retries``) and ``replaced`` (workers restarted).
    """

    name = "executor"

    def __init__(self) -> None:
        self.workers = 1
        self.started = False
        self.stats = {"retried": 0, "lost": 0, "replaced": 0}
        self._started_with = None

    def start(self, evaluator) -> None:
        """Ships ``evaluator`` to the workers (once) and starts them."""
        raise NotImplementedError

    def ensure_started(self, evaluator) -> None:
        """Starts the workers with ``evaluator`` unless they already hold it; workers holding another
        evaluator (an executor reused for a second search) are restarted, never scored with."""
        if self.started and self._started_with is evaluator:
            return
        if self.started:
            self.close()
        self.start(evaluator)
        self._started_with = evaluator

    def map(self, policies: Sequence) -> Iterator[tuple[int, Any, float]]:
        """Evaluates ``policies``; yields ``(index, outcome, seconds)`` in completion order.

        ``outcome`` is the evaluator's ``Candidate`` or the exception that stands for a failed
        evaluation (the evaluator's own, :class:`RemoteEvaluationError`, :class:`WorkerLost`).
        """
        raise NotImplementedError

    def close(self) -> None:
        """Stops the workers. Safe to call twice."""
        self.started = False
        self._started_with = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


class SerialExecutor(Executor):
    """Evaluates in this process, one policy after the other, in order (the default)."""

    name = "serial"

    def start(self, evaluator) -> None:
        self.evaluator = evaluator
        self.started = True

    def map(self, policies: Sequence) -> Iterator[tuple[int, Any, float]]:
        for i, policy in enumerate(policies):
            start = time.perf_counter()
            try:
                outcome = self.evaluator.evaluate(policy)
            except Exception as e:  # KeyboardInterrupt/SystemExit propagate
                outcome = e
            yield i, outcome, time.perf_counter() - start


class _Scheduler:
    """The bookkeeping both pools share: pending policies, retries after a worker died."""

    def __init__(self, executor: Executor, n: int, max_retries: int):
        self.executor = executor
        self.pending = collections.deque(range(n))
        self.attempts = collections.Counter()
        self.max_retries = max_retries
        self.remaining = n

    def worker_died(self, index: int, why: str) -> tuple[int, Any, float] | None:
        """Requeues ``index`` (first in line) or, out of retries, returns its :class:`WorkerLost` outcome."""
        self.attempts[index] += 1
        if self.attempts[index] > self.max_retries:
            self.executor.stats["lost"] += 1
            self.remaining -= 1
            return index, WorkerLost(
                f"WorkerLost: the worker evaluating it died {self.attempts[index]} times ({why})"
            ), 0.0
        self.executor.stats["retried"] += 1
        self.pending.appendleft(index)
        return None

    def done(self) -> None:
        self.remaining -= 1


# -- local worker processes --------------------------------------------------------------------
def _process_worker(conn, payload: bytes, threads: int | None) -> None:
    """A worker process: build the evaluator once, then evaluate the policies it is sent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _configure_tensorflow(threads)
    try:
        evaluator = _materialize(pickle.loads(payload))
    except BaseException as e:
        conn.send(("init_error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if message is None:
            return
        task, policy = message
        status, value, seconds = evaluate_remotely(evaluator, policy)
        try:
            conn.send((task, status, value, seconds))
        except (BrokenPipeError, OSError):
            return
        except Exception as e:  # the candidate does not pickle
            conn.send((task, "error", f"{type(e).__name__}: the result could not be sent back: {e}", seconds))


class _Process:
    __slots__ = ("process", "conn", "ready", "task")

    def __init__(self, process, conn):
        self.process, self.conn = process, conn
        self.ready = False
        self.task = None  # the task id in flight


class ProcessExecutor(Executor):
    """N local worker processes (``multiprocessing`` with ``spawn``: TensorFlow is not fork-safe).

    Args:
        workers: worker processes. Defaults to the number of usable CPUs.
        max_retries: how many more workers may try a policy whose worker died. Defaults to 2.
        threads_per_worker: TensorFlow's intra-op threads in each worker; None: CPUs / workers (at
            least 1). Defaults to None.
        start_timeout: seconds a worker may take to build its evaluator. Defaults to 600.
    """

    name = "process"

    def __init__(self, workers: int | None = None, *, max_retries: int = 2, threads_per_worker: int | None = None,
                 start_timeout: float = 600.0):
        super().__init__()
        self.workers = _check_workers(workers, cpu_count())
        self.max_retries = _check_retries(max_retries)
        self.threads_per_worker = threads_per_worker or max(1, cpu_count() // self.workers)
        self.start_timeout = float(start_timeout)
        self._pool: list[_Process] = []
        self._payload: bytes | None = None
        self._next_task = 0
        self._context = multiprocessing.get_context("spawn")

    def start(self, evaluator) -> None:
        try:
            self._payload = pickle.dumps(evaluator_payload(evaluator))
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            raise ValueError(
                f"Cannot send the evaluator ({type(evaluator).__name__}) to worker processes: it does not pickle "
                f"({e}). Give it a `spec()` method returning a picklable callable that rebuilds it, or use "
                "executor='serial'."
            ) from None
        self._pool = [self._spawn() for _ in range(self.workers)]
        self.started = True
        deadline = time.monotonic() + self.start_timeout
        while not all(w.ready for w in self._pool):  # surfaces a broken evaluator now, not per candidate
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ExecutorError(f"{sum(not w.ready for w in self._pool)} of {self.workers} worker processes did "
                                    f"not start within {self.start_timeout:.0f} s.")
            for w in list(self._pool):
                if not w.ready:
                    self._poll_start(w, left / len(self._pool))

    def _spawn(self) -> _Process:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_process_worker, args=(child, self._payload, self.threads_per_worker), daemon=True,
            name="tfmpq-worker",
        )
        process.start()
        child.close()
        return _Process(process, parent)

    def _poll_start(self, w: _Process, timeout: float) -> None:
        ready = _wait_connections([w.conn, w.process.sentinel], timeout=timeout)
        if w.conn in ready:
            try:
                message = w.conn.recv()
            except EOFError:
                message = None
            if message is not None and message[0] == "ready":
                w.ready = True
                return
            if message is not None:
                self.close()
                raise ExecutorError(f"A worker process could not build the evaluator: {message[1]}")
        if w.conn in ready or w.process.sentinel in ready:
            w.process.join(timeout=5)
            code = w.process.exitcode
            self.close()
            raise ExecutorError(
                f"A worker process exited while starting (exit code {code}; its traceback is above). Worker "
                "processes re-import the main script: start the search under `if __name__ == \"__main__\":`."
            )

    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return [w.process.pid for w in self._pool]

    def busy_pids(self) -> list[int]:
        """The ids of the workers evaluating a policy now."""
        return [w.process.pid for w in self._pool if w.task is not None]

    def map(self, policies: Sequence) -> Iterator[tuple[int, Any, float]]:
        if not self.started:
            raise ExecutorError("ProcessExecutor.map() before start().")
        sched = _Scheduler(self, len(policies), self.max_retries)
        batch = {}  # task id -> policy index, for this batch only: late results of an abandoned batch are dropped
        while sched.remaining:
            for w in self._pool:
                if w.ready and w.task is None and sched.pending:
                    index = sched.pending.popleft()
                    task = self._next_task
                    self._next_task += 1
                    try:
                        w.conn.send((task, policies[index]))
                    except (BrokenPipeError, OSError):
                        sched.pending.appendleft(index)
                        continue  # its death shows on the sentinel below
                    w.task, batch[task] = task, index
            handles = {}
            for w in self._pool:
                handles[w.conn] = w
                handles[w.process.sentinel] = w
            for handle in _wait_connections(list(handles)):
                w = handles[handle]
                if w not in self._pool:  # replaced earlier in this loop
                    continue
                if handle is w.conn or w.conn.poll():
                    try:
                        message = w.conn.recv()
                    except (EOFError, OSError):
                        message = None
                    if message is not None:
                        if message[0] == "ready":
                            w.ready = True
                            continue
                        if message[0] == "init_error":
                            self.close()
                            raise ExecutorError(f"A replacement worker could not build the evaluator: {message[1]}")
                        task, status, value, seconds = message
                        w.task = None
                        index = batch.pop(task, None)
                        if index is not None:
                            sched.done()
                            yield index, _outcome(status, value), seconds
                        continue
                # the process died (a sentinel, or its pipe closed)
                if not w.ready:  # a replacement that cannot even start: respawning it again would loop
                    w.process.join(timeout=5)
                    code = w.process.exitcode
                    self.close()
                    raise ExecutorError(f"A replacement worker process died while starting (exit code {code}).")
                out = self._replace(w, sched, batch)
                if out is not None:
                    yield out

    def _replace(self, w: _Process, sched: _Scheduler, batch: dict):
        w.process.join(timeout=5)
        code = w.process.exitcode
        self._pool[self._pool.index(w)] = self._spawn()
        self.stats["replaced"] += 1
        warnings.warn(f"A tfmpq worker process died (exit code {code}); it was replaced.", RuntimeWarning, stacklevel=3)
        if w.task is not None and w.task in batch:
            index = batch.pop(w.task)
            return sched.worker_died(index, f"last exit code {code}")
        return None

    def close(self) -> None:
        for w in self._pool:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._pool:
            w.process.join(timeout=2 if w.task is None else 0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            w.conn.close()
        self._pool = []
        super().close()


# -- Ray actors --------------------------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_INSTALL_HINT) from None
    return ray


class RayWorker:
    """The body of one Ray actor: builds the evaluator once (from the object store), then evaluates."""

    def __init__(self, payload, threads: int | None, use_gpu: bool):
        _configure_tensorflow(threads, use_gpu)
        self.evaluator = _materialize(payload)

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, policy) -> tuple[str, Any, float]:
        return evaluate_remotely(self.evaluator, policy)


class RayExecutor(Executor):
    """One Ray actor per worker, on an existing cluster (``address``) or a local Ray started for the run.

    Args:
        workers: actors. None: as many as the cluster's GPUs (``gpus_per_worker > 0``) or CPUs hold.
            Defaults to None.
        address: the cluster to join (``"auto"``, ``"ray://head:10001"``, ...); None starts a local Ray
            unless one is running in this process (or ``RAY_ADDRESS`` names one). Defaults to None.
        gpus_per_worker: GPUs each actor reserves (fractions share a GPU). Defaults to 0.
        cpus_per_worker: CPUs each actor reserves; also its TensorFlow thread count. Defaults to 1.
        max_retries: how many more actors may try a policy whose actor died. Defaults to 2.
        runtime_env: Ray's ``runtime_env`` for the actors (e.g. ``{"pip": [...]}`` or ``{"env_vars":
            {...}}`` on a cluster whose nodes need more). Defaults to None.
        start_timeout: seconds the actors may take to start and build their evaluator. Defaults to 600.
        init_kwargs: more arguments for ``ray.init``. Defaults to None.

    Raises:
        ImportError: Ray is not installed (with the install command).
    """

    name = "ray"

    def __init__(self, workers: int | None = None, *, address: str | None = None, gpus_per_worker: float = 0.0,
                 cpus_per_worker: float = 1.0, max_retries: int = 2, runtime_env: dict | None = None,
                 start_timeout: float = 600.0, init_kwargs: dict | None = None):
        super().__init__()
        _import_ray()  # the install hint now, not after the model is loaded
        self._requested = None if workers is None else _check_workers(workers, None)
        self.workers = self._requested or 0
        if not (isinstance(gpus_per_worker, (int, float)) and gpus_per_worker >= 0):
            raise ValueError(f"Invalid value for `gpus_per_worker`: expected a number >= 0. Received: {gpus_per_worker!r}")
        if not (isinstance(cpus_per_worker, (int, float)) and cpus_per_worker > 0):
            raise ValueError(f"Invalid value for `cpus_per_worker`: expected a number > 0. Received: {cpus_per_worker!r}")
        self.address = address
        self.gpus_per_worker = float(gpus_per_worker)
        self.cpus_per_worker = float(cpus_per_worker)
        self.max_retries = _check_retries(max_retries)
        self.runtime_env = runtime_env
        self.start_timeout = float(start_timeout)
        self.init_kwargs = dict(init_kwargs or {})
        self._ray = None
        self._owns_ray = False
        self._actors: list = []
        self._pid_refs: list = []
        self._busy: dict[int, Any] = {}  # slot -> the task id it runs
        self._inflight: dict = {}  # ObjectRef -> (slot, task id)
        self._next_task = 0

    def _init_ray(self):
        ray = self._ray = _import_ray()
        if ray.is_initialized():
            return ray
        kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR", **self.init_kwargs}
        if self.address is None and not os.environ.get("RAY_ADDRESS"):
            needed = (self._requested or cpu_count()) * self.cpus_per_worker
            kwargs.setdefault("num_cpus", max(cpu_count(), int(-(-needed // 1))))
        ray.init(address=self.address, **kwargs)
        self._owns_ray = True
        return ray

    def start(self, evaluator) -> None:
        ray = self._init_ray()
        resources = ray.cluster_resources()
        if self.gpus_per_worker > 0 and resources.get("GPU", 0) < self.gpus_per_worker:
            self.close()
            raise ExecutorError(f"gpus_per_worker={self.gpus_per_worker:g} but the Ray cluster has "
                                f"{resources.get('GPU', 0):g} GPU(s).")
        if not self._requested:
            if self.gpus_per_worker > 0:
                self.workers = max(1, int(resources.get("GPU", 0) // self.gpus_per_worker))
            else:
                self.workers = max(1, int(resources.get("CPU", 1) // self.cpus_per_worker))
        try:
            self._payload_ref = ray.put(evaluator_payload(evaluator))
        except Exception as e:
            self.close()
            raise ValueError(
                f"Cannot send the evaluator ({type(evaluator).__name__}) to Ray: it does not serialize ({e}). "
                "Give it a `spec()` method returning a picklable callable that rebuilds it."
            ) from None
        options = {"num_cpus": self.cpus_per_worker, "num_gpus": self.gpus_per_worker, "max_restarts": 0,
                   "max_task_retries": 0}
        if self.runtime_env:
            options["runtime_env"] = self.runtime_env
        self._actor_class = ray.remote(RayWorker).options(**options)
        self._actors = [self._new_actor() for _ in range(self.workers)]
        self._pid_refs = [a.pid.remote() for a in self._actors]
        self.started = True
        ready, waiting = ray.wait(self._pid_refs, num_returns=len(self._pid_refs), timeout=self.start_timeout)
        if waiting:
            self.close()
            raise ExecutorError(
                f"{len(waiting)} of {self.workers} Ray workers did not start within {self.start_timeout:.0f} s: each "
                f"asks for {self.cpus_per_worker:g} CPU and {self.gpus_per_worker:g} GPU; the cluster has "
                f"{resources.get('CPU', 0):g} CPU and {resources.get('GPU', 0):g} GPU."
            )
        try:
            ray.get(ready)
        except ray.exceptions.RayError as e:
            self.close()
            raise ExecutorError(f"A Ray worker could not build the evaluator: {e}") from None

    def _new_actor(self):
        threads = max(1, int(self.cpus_per_worker))
        return self._actor_class.remote(self._payload_ref, threads, self.gpus_per_worker > 0)

    def pids(self) -> list[int]:
        """The actors' process ids (on their nodes)."""
        return [int(p) for p in self._ray.get(self._pid_refs)]

    def busy_pids(self) -> list[int]:
        """The process ids of the actors evaluating a policy now."""
        return [int(self._ray.get(self._pid_refs[slot])) for slot in list(self._busy)]

    def map(self, policies: Sequence) -> Iterator[tuple[int, Any, float]]:
        if not self.started:
            raise ExecutorError("RayExecutor.map() before start().")
        ray = self._ray
        sched = _Scheduler(self, len(policies), self.max_retries)
        batch = {}  # task id -> policy index (results of an abandoned batch are dropped)
        while sched.remaining:
            for slot in range(len(self._actors)):
                if slot not in self._busy and sched.pending:
                    index = sched.pending.popleft()
                    task, self._next_task = self._next_task, self._next_task + 1
                    ref = self._actors[slot].evaluate.remote(policies[index])
                    self._inflight[ref] = (slot, task)
                    self._busy[slot] = task
                    batch[task] = index
            done, _ = ray.wait(list(self._inflight), num_returns=1)
            for ref in done:
                slot, task = self._inflight.pop(ref)
                del self._busy[slot]
                index = batch.pop(task, None)
                try:
                    status, value, seconds = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    self._replace(slot, e)
                    if index is not None:
                        out = sched.worker_died(index, f"last: {type(e).__name__}")
                        if out is not None:
                            yield out
                    continue
                except ray.exceptions.RayError as e:  # e.g. the result did not deserialize here
                    status, value, seconds = "error", f"{type(e).__name__}: {e}", 0.0
                if index is not None:
                    sched.done()
                    yield index, _outcome(status, value), seconds

    def _replace(self, slot: int, error: BaseException) -> None:
        ray = self._ray
        try:
            ray.kill(self._actors[slot], no_restart=True)
        except Exception:
            pass
        self._actors[slot] = self._new_actor()
        self._pid_refs[slot] = self._actors[slot].pid.remote()
        self.stats["replaced"] += 1
        warnings.warn(f"A tfmpq Ray worker died ({type(error).__name__}); it was replaced.", RuntimeWarning,
                      stacklevel=3)

    def close(self) -> None:
        ray = self._ray
        if ray is not None:
            for actor in self._actors:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:
                    pass
            if self._owns_ray and ray.is_initialized():
                ray.shutdown()
        self._actors, self._pid_refs, self._busy, self._inflight = [], [], {}, {}
        self._owns_ray = False
        super().close()


# -- choosing one ------------------------------------------------------------------------------
def _check_workers(workers, default: int | None) -> int:
    if workers is None:
        return default
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"Invalid value for `workers`: expected an integer >= 1. Received: workers={workers!r}")
    return workers


def _check_retries(max_retries) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"Invalid value for `max_retries`: expected an integer >= 0. Received: {max_retries!r}")
    return max_retries


def get(executor: str | Executor | None = "serial", *, workers: int | None = None, ray_address: str | None = None,
        gpus_per_worker: float = 0.0, max_retries: int = 2) -> Executor:
    """An :class:`Executor` from its name (``"serial"``, ``"process"``, ``"ray"``) or as given.

    Args:
        executor: a name or an :class:`Executor` instance (returned as is). None means "serial".
        workers: worker processes / actors; None: one per CPU (Ray: what the cluster holds).
        ray_address: the Ray cluster to join (``executor="ray"`` only).
        gpus_per_worker: GPUs per Ray actor (``executor="ray"`` only).
        max_retries: retries of a policy whose worker died.

    Raises:
        ValueError: an unknown name, or an option the executor does not take.
        ImportError: ``"ray"`` without Ray installed.
    """
    if isinstance(executor, Executor):
        return executor
    name = "serial" if executor is None else executor
    if name not in EXECUTORS:
        raise ValueError(f"Invalid value for `executor`: expected one of {EXECUTORS} or an Executor. "
                         f"Received: executor={executor!r}")
    if name != "ray" and (ray_address is not None or gpus_per_worker):
        raise ValueError(f"`ray_address` and `gpus_per_worker` need executor='ray'. Received: executor={name!r}")
    if name == "serial":
        if workers not in (None, 1):
            raise ValueError(f"executor='serial' runs one evaluation at a time; `workers={workers!r}` needs "
                             "executor='process' or 'ray'.")
        return SerialExecutor()
    if name == "process":
        return ProcessExecutor(workers, max_retries=max_retries)
    return RayExecutor(workers, address=ray_address, gpus_per_worker=gpus_per_worker, max_retries=max_retries)
