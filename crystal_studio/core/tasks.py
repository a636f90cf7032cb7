"""Tasks: how a job splits its work so that it can run here or on a cluster.

A job splits its work into tasks and hands them to an :class:`Executor`:

- a task is a *pure function* ``fn(shared, item, context) -> result`` defined at module level (so a
  cluster sends it by reference): ``item`` is plain data (structures as dicts), ``shared`` a
  :class:`Shared` handle on the data every task needs (model weights, a project snapshot), sent
  once and fetched once per worker process, never re-sent per task;
- results come back to the driver, which takes each as it arrives (:meth:`Executor.iterate`, or
  ``on_result(index, result)`` with :meth:`Executor.run`): **only the driver writes the project
  store**, so the store keeps its one writer and its transactions;
- cancellation (the job's :class:`~crystal_studio.core.progress.CancelToken`) stops queued tasks
  and cancels running ones, and the executor returns only when no task of the job runs any more;
- a task lost with its worker or node is resubmitted a few times; the :class:`TaskReport` names
  every retried task and every task that stayed lost, so nothing goes silently missing. An exception
  *raised by the task's code* propagates to the caller as it would locally.

This module holds the protocol and the :class:`LocalExecutor` (in this process, one task after
another, as every job always ran); the Ray executor and the choice by name (``--executor``) are in
:mod:`crystal_studio.jobs.executors`, so that the design layer uses tasks without importing the
layers above it.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, no_progress


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


ONE_CPU = TaskResources()
"""What a task reserves unless its job says otherwise: one CPU, no GPU."""


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

    def device(self, device: str) -> str:
        """``device`` for tasks, with 'auto' resolved where the executor knows the hardware (a Ray
        cluster); here 'auto' stays, for :func:`crystal_studio.ml.runtime.task_device` to resolve on
        this machine (core does not import torch)."""
        return device

    def run(self, fn: Callable[[Shared, Any, TaskContext], Any], items: Sequence[Any], shared: Shared | None = None,
            resources: TaskResources = ONE_CPU, on_result: Callable[[int, Any], None] | None = None,
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
                shared: Shared | None = None, resources: TaskResources = ONE_CPU,
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

    def iterate(self, fn, items, shared=None, resources=ONE_CPU, cancel=None, progress=no_progress,
                notify=None, report=None):
        cancel = cancel or CancelToken()
        shared = shared if shared is not None else self.share(None)
        report = report if report is not None else TaskReport(len(items), executor=self.name)
        for index in range(len(items)):
            cancel.check()
            result = fn(shared, items[index], TaskContext(index, len(items), cancel, progress))
            report.done += 1
            yield index, result


def task_resources(executor: Executor, device: str, cpus: float = 1.0) -> TaskResources:
    """Resources of a task on ``device`` (resolved): one GPU share on 'cuda', none on 'cpu'."""
    gpus = getattr(executor, "gpus_per_task", 1.0) if device.startswith("cuda") else 0.0
    return TaskResources(cpus=cpus, gpus=gpus)
