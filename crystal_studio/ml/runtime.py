"""Where and with what a model runs: device choice, thread count, and the versions recorded with runs."""

from __future__ import annotations

import importlib
import platform
import sys
from importlib import metadata

import torch

from crystal_studio.core.errors import CrystalStudioError


def library_version(dist: str, module: str) -> str:
    """The installed version of ``dist``, from its metadata or else ``module.__version__`` (the frozen app
    ships no metadata for some packages, torch among them)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        pass
    try:
        return str(getattr(importlib.import_module(module), "__version__", "unknown"))
    except ImportError:
        return "not installed"


DEVICE_CHOICES = ("auto", "cpu", "cuda")


def import_lazy_modules() -> None:
    """Import now what torch imports on the first optimizer of a process (``torch._dynamo``: about 0.6 s
    of Python imports holding the GIL). The window's device detection calls it, in the background, when a
    panel that runs torch comes into view, so the first training does not spend that time competing
    with a scrolled table (issue 15)."""
    import torch._dynamo  # noqa: F401


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CrystalStudioError("--device cuda: no CUDA GPU is visible to torch (use --device cpu or auto)")
        return torch.device(name)
    raise CrystalStudioError(f"unknown device '{name}' (choose one of {', '.join(DEVICE_CHOICES)})")


def task_device(executor, device: str) -> str:
    """``device`` for the tasks of ``executor`` (a :class:`crystal_studio.core.tasks.Executor`): 'auto'
    resolved where they run (a cluster's GPUs, or this machine's)."""
    chosen = executor.device(device)
    return str(resolve_device(chosen)) if chosen == "auto" else chosen


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch operations (0 keeps torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)


def describe_device(device: torch.device) -> str:
    """E.g. 'cpu (2 threads)' or 'cuda:0 (NVIDIA H100 80GB HBM3)'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def package_versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages that determine a run's results."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package, module in (("crystal-studio", "crystal_studio"), ("torch", "torch"), ("numpy", "numpy"),
                            ("pymatgen", "pymatgen.core")):
        out[package] = library_version(package, module)
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    return out
