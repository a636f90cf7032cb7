"""Executors: where the tasks of a job run. Local (the default: in this process, one after another, as
every job always ran) or on a Ray cluster (``--executor ray [--ray-address ADDRESS]``).

A job splits its work into tasks and hands them to :meth:`Executor.run`:

- a task is a *pure function* ``fn(shared, item, context) -> result`` defined at module level (so Ray
  sends it by reference): ``item`` is plain data (structures as dicts), ``shared`` a
  :class:`Shared` handle on the data every task needs (model weights, a project snapshot), sent
  once through Ray's object store and fetched once per worker process, never re-sent per task;
- results come back to the driver, which hands each to ``on_result(index, result)`` as it arrives:
  **only the driver writes the project store**, so the store keeps its one writer and its
  transactions;
- cancellation (the job's :class:`~crystal_studio.core.progress.CancelToken`) stops queued tasks
  and cancels running ones (``ray.cancel``; forced after a grace period), and :meth:`Executor.run`
  returns only when no task of the job runs any more;
- a task lost with its worker or node (killed, out of memory, node gone) is resubmitted up to
  ``retries`` times; the :class:`TaskReport` names every retried task and every task that stayed
  lost, so nothing goes silently missing. An exception *raised by the task's code* is not retried:
  it propagates to the caller as it would locally.

Threads: a Ray task runs with ``torch.set_num_threads`` equal to the CPUs it reserved, so tasks packed
on a node do not oversubscribe its cores; a GPU task reserves ``num_gpus`` (a fraction lets several
share one GPU). The local executor leaves threads to the task, as before.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from crystal_studio.core.errors import Cancelled, CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, no_progress

EXECUTORS = ("local", "ray")
CANCEL_GRACE_S = 5.0
"""Seconds a cancelled running Ray task gets to stop (KeyboardInterrupt in the task) before its
worker is killed (``ray.cancel(force=True)``)."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------- what tasks see


_CACHE_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple[str, str], Any] = OrderedDict()
_CACHE_SIZE = 8


class Shared:
    """A handle on data every task of a job reads (weights, a snapshot): the value itself locally, a
    Ray object reference on Ray. :meth:`get` fetches it once per process; :meth:`derived` builds
    something from it (a loaded model) once per process."""

    def __init__(self, value: Any = None, ref: Any = None):
        self.token = uuid.uuid4().hex
        self._value = value
        self._ref = ref  # a ray.ObjectRef inside an object is not resolved by Ray: fetched on demand

    def __getstate__(self) -> dict:
        return {"token": self.token, "_value": None, "_ref": self._ref}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def get(self) -> Any:
        if self._ref is None:
            return self._value

        def fetch():
            import ray

            return ray.get(self._ref)

        return self.derived("value", fetch)

    def derived(self, name: str, build: Callable[[], Any]) -> Any:
        """``build()``, called once per process for this handle and ``name`` and kept (the few newest
        handles are kept)."""
        key = (self.token, name)
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
        value = build()
        with _CACHE_LOCK:
            _CACHE[key] = value
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return value

    def release(self) -> None:
        """Forget what this process keeps for the handle."""
        with _CACHE_LOCK:
            for key in [k for k in _CACHE if k[0] == self.token]:
                del _CACHE[key]


@dataclass
class TaskContext:
    """What a running task may use besides its inputs: its place in the job, a cancellation check
    and a progress callback for progress *within* the task (both inert on Ray, where the driver
    reports per finished task and cancels with ``ray.cancel``)."""

    index: int = 0
    total: int = 1
    cancel: CancelToken = field(default_factory=CancelToken)
    progress: ProgressCallback = no_progress
    remote: bool = False

    def check(self) -> None:
        self.cancel.check()


@dataclass(frozen=True)
class TaskResources:
    """What one task reserves: CPUs (also its torch threads on Ray) and GPUs (0 for CPU tasks)."""

    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def threads(self) -> int:
        return max(1, math.floor(self.cpus))


@dataclass
class TaskReport:
    """What became of a job's tasks: how many finished, which were lost and resubmitted (index →
    times lost before it finished) and which stayed lost (index → why)."""

    total: int
    done: int = 0
    retried: dict[int, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    executor: str = "local"

    @property
    def complete(self) -> bool:
        return self.done == self.total and not self.failed

    def as_json(self, labels: Sequence[Any] | None = None) -> dict:
        name = (lambda i: labels[i]) if labels is not None else (lambda i: i)
        return {"executor": self.executor, "tasks": self.total, "done": self.done,
                "retried": [{"task": name(i), "times_lost": n} for i, n in sorted(self.retried.items())],
                "failed": [{"task": name(i), "reason": r} for i, r in sorted(self.failed.items())]}


class TasksLost(CrystalStudioError):
    """Some tasks of a job stayed lost (their workers or nodes died more often than the retries
    allowed); what finished was stored. ``report`` names them."""

    def __init__(self, message: str, report: TaskReport):
        super().__init__(message)
        self.report = report


# ---------------------------------------------------------------- executors


class Executor:
    """Runs a job's tasks; see the module docstring."""

    name = "local"
    remote = False

    def share(self, value: Any) -> Shared:
        """A handle on ``value`` for every task of a job."""
        return Shared(value=value)

    def has_gpus(self) -> bool:
        import torch

        return torch.cuda.is_available()

    def device(self, device: str) -> str:
        """``device`` for tasks ('auto' resolved where the tasks run: 'cuda' when GPUs are there)."""
        if device != "auto":
            return device
        return "cuda" if self.has_gpus() else "cpu"

    def run(self, fn: Callable[[Shared, Any, TaskContext], Any], items: Sequence[Any], shared: Shared | None = None,
            resources: TaskResources = TaskResources(), on_result: Callable[[int, Any], None] | None = None,
            cancel: CancelToken | None = None, progress: ProgressCallback = no_progress,
            notify: Callable[[str], None] | None = None) -> TaskReport:
        """Run ``fn`` on every item, handing each result to ``on_result(index, result)`` as it arrives;
        returns what became of the tasks."""
        report = TaskReport(len(items), executor=self.name)
        for index, result in self.iterate(fn, items, shared, resources, cancel, progress, notify, report):
            if on_result is not None:
                on_result(index, result)
        return report

    def iterate(self, fn: Callable[[Shared, Any, TaskContext], Any], items: Sequence[Any],
                shared: Shared | None = None, resources: TaskResources = TaskResources(),
                cancel: CancelToken | None = None, progress: ProgressCallback = no_progress,
                notify: Callable[[str], None] | None = None,
                report: TaskReport | None = None) -> Iterator[tuple[int, Any]]:
        """(index, result) of every task as it finishes, recorded in ``report``. ``items`` is read by
        index as tasks are submitted (a lazy sequence keeps a large job's inputs out of memory).
        Closing the iterator early cancels the tasks still queued or running."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor started."""


class LocalExecutor(Executor):
    """Tasks run here, in this thread, one after another, in order (what every job did before
    executors): the task's context carries the job's cancel token and progress callback."""

    def iterate(self, fn, items, shared=None, resources=TaskResources(), cancel=None, progress=no_progress,
                notify=None, report=None):
        cancel = cancel or CancelToken()
        shared = shared if shared is not None else self.share(None)
        report = report if report is not None else TaskReport(len(items), executor=self.name)
        for index in range(len(items)):
            cancel.check()
            result = fn(shared, items[index], TaskContext(index, len(items), cancel, progress))
            report.done += 1
            yield index, result


def _lost_errors() -> tuple[type[BaseException], ...]:
    """Ray's exceptions for a task lost with its worker, node or objects (not raised by its code)."""
    import ray.exceptions as rex

    names = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError",
             "OwnerDiedError", "ObjectFetchTimedOutError", "ObjectReconstructionFailedError", "OutOfMemoryError",
             "RaySystemError")
    return tuple(getattr(rex, n) for n in names if isinstance(getattr(rex, n, None), type))


def _ray_task(fn, threads: int, shared: Shared, item, index: int, total: int):
    """What a Ray worker runs for one task: torch threads set to the task's CPUs, then ``fn``."""
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    return fn(shared, item, TaskContext(index, total, remote=True))


class RayExecutor(Executor):
    """Tasks run as Ray tasks: on the cluster at ``address`` ('auto': the one this node belongs to),
    or, without an address, on a Ray instance started here with ``num_cpus`` CPUs (default: the cores
    this process may use). A Ray session already initialized in this process is used as it is."""

    name = "ray"
    remote = True

    def __init__(self, address: str | None = None, num_cpus: int | None = None, gpus_per_task: float = 1.0,
                 retries: int = 2):
        try:
            import ray
        except ImportError:
            raise CrystalStudioError("--executor ray needs Ray: pip install 'crystal-studio[cluster]'") from None
        self.gpus_per_task = gpus_per_task
        self.retries = retries
        self._owns = False
        if not ray.is_initialized():
            options = {"log_to_driver": False, "include_dashboard": False, "logging_level": "ERROR"}
            try:
                if address:
                    ray.init(address=address, **options)
                else:
                    ray.init(address="local", num_cpus=num_cpus or usable_cores(), **options)  # never a stray cluster
            except ConnectionError as exc:
                raise CrystalStudioError(f"no Ray cluster at {address}: {exc}") from None
            self._owns = True
        self._remote = ray.remote(_ray_task)

    def share(self, value: Any) -> Shared:
        import ray

        return Shared(ref=ray.put(value))

    def has_gpus(self) -> bool:
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0

    def in_flight(self, resources: TaskResources) -> int:
        """How many tasks of one job are kept submitted at once: enough to keep every CPU (or GPU) of
        the cluster busy twice over, so that inputs are read as the cluster takes them."""
        import ray

        total = ray.cluster_resources()
        slots = [total.get("CPU", 1) / max(resources.cpus, 1e-3)]
        if resources.gpus:
            slots.append(total.get("GPU", 0) / resources.gpus)
        return max(2, int(2 * min(slots)))

    def iterate(self, fn, items, shared=None, resources=TaskResources(), cancel=None, progress=no_progress,
                notify=None, report=None):
        import ray
        from ray.exceptions import RayTaskError, TaskCancelledError

        cancel = cancel or CancelToken()
        shared = shared if shared is not None else self.share(None)
        lost_errors = _lost_errors()
        report = report if report is not None else TaskReport(len(items), executor=self.name)
        options = {"num_cpus": resources.cpus, "num_gpus": resources.gpus, "max_retries": 0,
                   "retry_exceptions": False}
        pending: dict[Any, int] = {}
        window = self.in_flight(resources)
        next_index = 0

        def submit(index: int) -> None:
            ref = self._remote.options(**options).remote(fn, resources.threads, shared, items[index], index, len(items))
            pending[ref] = index

        try:
            while next_index < len(items) or pending:
                while next_index < len(items) and len(pending) < window:
                    submit(next_index)
                    next_index += 1
                cancel.check()
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.2, fetch_local=True)
                for ref in ready:
                    index = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except TaskCancelledError:
                        raise Cancelled() from None
                    except RayTaskError as exc:  # the task's own code raised: as it would locally
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, BaseException) and not isinstance(cause, lost_errors):
                            raise cause from None
                        raise
                    except lost_errors as exc:
                        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                        times = report.retried.get(index, 0) + 1
                        if times <= self.retries:
                            report.retried[index] = times
                            if notify:
                                notify(f"task {index + 1} lost ({reason}); resubmitted ({times}/{self.retries})")
                            submit(index)
                        else:
                            report.retried.pop(index, None)
                            report.failed[index] = f"lost {times} times, last: {reason}"
                            if notify:
                                notify(f"task {index + 1} lost {times} times; given up ({reason})")
                        continue
                    report.done += 1
                    yield index, result
        finally:
            if pending:
                self._cancel(list(pending))

    @staticmethod
    def _cancel(refs: list) -> None:
        """Cancel ``refs`` (queued ones never start, running ones get KeyboardInterrupt, then their
        workers are killed after :data:`CANCEL_GRACE_S`); returns once none of them runs."""
        import ray

        for ref in refs:
            ray.cancel(ref, force=False, recursive=True)
        deadline = time.monotonic() + CANCEL_GRACE_S
        left = refs
        while left and time.monotonic() < deadline:
            _, left = ray.wait(left, num_returns=len(left), timeout=0.2, fetch_local=False)
        for ref in left:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished
                pass
        if left:
            ray.wait(left, num_returns=len(left), timeout=30, fetch_local=False)

    def close(self) -> None:
        if self._owns:
            import ray

            ray.shutdown()
            self._owns = False


def make_executor(name: str = "local", address: str | None = None, num_cpus: int | None = None,
                  gpus_per_task: float = 1.0) -> Executor:
    """The executor called ``name`` ('local' or 'ray'); ``address`` only with Ray."""
    if name == "local":
        if address:
            raise CrystalStudioError("--ray-address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, num_cpus, gpus_per_task)
    raise CrystalStudioError(f"unknown executor '{name}' (choose {' or '.join(EXECUTORS)})")


def task_resources(executor: Executor, device: str, cpus: float = 1.0) -> TaskResources:
    """Resources of a task on ``device`` (resolved): one GPU share on 'cuda', none on 'cpu'."""
    gpus = getattr(executor, "gpus_per_task", 1.0) if device.startswith("cuda") else 0.0
    return TaskResources(cpus=cpus, gpus=gpus)
