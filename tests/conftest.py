"""Shared fixtures: small test data, temporary projects, and the real datasets when present."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import pytest

# Never touch the real user folder: the built-in project goes to a throw-away place.
os.environ.setdefault("CRYSTAL_STUDIO_HOME", tempfile.mkdtemp(prefix="cs-home-"))
warnings.filterwarnings("ignore", module="pymatgen")

DATA = Path(__file__).parent / "data"
GOOD = DATA / "good"
BROKEN = DATA / "broken"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present (real datasets live in ../shared/data)")
    return path


@pytest.fixture
def project(tmp_path):
    from crystal_studio.store.project import Project

    proj = Project.create(tmp_path / "p.sqlite")
    yield proj
    proj.close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy machine idle threads only wait."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
