"""Executors by name: local (the default, :class:`~crystal_studio.core.tasks.LocalExecutor`) or a
Ray cluster (``--executor ray [--ray-address ADDRESS]``), for the task protocol of
:mod:`crystal_studio.core.tasks`.

On Ray a cancelled running task gets ``ray.cancel`` (KeyboardInterrupt in the task), forced after
:data:`CANCEL_GRACE_S`; a task lost with its worker, node or objects (killed, out of memory, node
gone) is resubmitted up to ``retries`` times. A Ray task runs with ``torch.set_num_threads`` equal to
the CPUs it reserved, so tasks packed on a node do not oversubscribe its cores; a GPU task reserves
``num_gpus`` (a fraction lets several share one GPU).
"""

from __future__ import annotations

import time
from typing import Any

from crystal_studio.core.errors import Cancelled, CrystalStudioError
from crystal_studio.core.progress import CancelToken, no_progress
from crystal_studio.core.tasks import (
    ONE_CPU,
    Executor,
    LocalExecutor,
    Shared,
    TaskContext,
    TaskReport,
    TaskResources,
    usable_cores,
)

EXECUTORS = ("local", "ray")
CANCEL_GRACE_S = 5.0
"""Seconds a cancelled running Ray task gets to stop (KeyboardInterrupt in the task) before its
worker is killed (``ray.cancel(force=True)``)."""


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

    def device(self, device: str) -> str:
        """'auto' is 'cuda' when the cluster has GPUs, else 'cpu'."""
        if device != "auto":
            return device
        import ray

        return "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"

    def in_flight(self, resources: TaskResources) -> int:
        """How many tasks of one job are kept submitted at once: enough to keep every CPU (or GPU) of
        the cluster busy twice over, so that inputs are read as the cluster takes them."""
        import ray

        total = ray.cluster_resources()
        slots = [total.get("CPU", 1) / max(resources.cpus, 1e-3)]
        if resources.gpus:
            slots.append(total.get("GPU", 0) / resources.gpus)
        return max(2, int(2 * min(slots)))

    def iterate(self, fn, items, shared=None, resources=ONE_CPU, cancel=None, progress=no_progress,
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


