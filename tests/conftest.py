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


@pytest.fixture(scope="session")
def tiny_crystal_vae(tmp_path_factory):
    """A small crystal VAE trained in seconds (CPU, one thread) on the good test structures; its stored
    record, to be copied into other projects with :func:`add_generator`."""
    import torch

    from crystal_studio.ml.kinds import config_for
    from crystal_studio.ml.training import train_model
    from crystal_studio.store import models as model_store
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    project = Project.create(tmp_path_factory.mktemp("tiny-vae") / "p.sqlite")
    import_paths(project, [GOOD], "good")
    config = config_for("crystal_vae", [], epochs=300, patience=1000, hidden=32, channels=8, batch_size=16, lr=3e-3,
                        max_sites=8, prior_samples=16, device="cpu", threads=1)
    result = train_model(project, "good", config, "tiny crystal VAE")
    torch.set_num_threads(threads)
    record = model_store.get_model(project, result.model_id)
    project.close()
    return record


def add_generator(project, record, dataset: str = "good") -> int:
    """Store the crystal VAE ``record`` (see :func:`tiny_crystal_vae`) in ``project`` as trained on
    ``dataset``; returns its model id."""
    from crystal_studio.store import models as model_store

    return model_store.add_model(project, record.name, record.kind, record.targets, record.hyperparameters,
                                 record.normalization, record.metrics, record.checkpoint,
                                 dataset_id=project.dataset_id(dataset))


def save_tiny_predictor(project):
    """A tiny untrained band-gap/formation-energy GNN (2 members, seed 0) stored in ``project``, trained on
    its dataset 'good': (model id, predictor)."""
    import torch

    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor, save_predictor

    torch.manual_seed(0)
    predictor = CrystalPredictor(GNNConfig(n_targets=2, hidden=16, layers=1, n_gaussians=8),
                                 ["band_gap", "formation_energy_per_atom"], members=2)
    predictor.set_normalization([1.0, -1.0], [1.0, 1.0])
    return save_predictor(project, predictor, "tiny", metrics={}, dataset_id=project.dataset_id("good")), predictor


@pytest.fixture
def design_project(project, one_torch_thread, tiny_crystal_vae):
    """A project with the good test structures as dataset 'good', a tiny untrained band-gap/formation-energy
    GNN predictor and the tiny crystal VAE: (project, predictor id, crystal VAE id)."""
    from crystal_studio.store.importer import import_paths

    import_paths(project, [GOOD], "good")
    model_id, _ = save_tiny_predictor(project)
    return project, model_id, add_generator(project, tiny_crystal_vae)


def generator_for(method: str, generator_id: int) -> int | None:
    """The crystal VAE id when ``method`` needs a generator, else None."""
    from crystal_studio.design.methods import get_method

    return generator_id if "generator" in get_method(method).needs else None
