"""Trained property predictors: ensembles with target normalization, stored in a project.

A :class:`CrystalPredictor` is K :class:`~crystal_studio.ml.models.gnn.CrystalGNN` members trained
from different seeds; it returns the ensemble mean and spread (standard deviation over members) in
the targets' physical units. It is differentiable: an optimizer builds a
:class:`~crystal_studio.ml.batching.CrystalBatch` whose soft types, fractional coordinates and
lattice require gradients and calls the predictor on it.

Weights cross the store boundary as bytes of a ``state_dict`` and are only ever read back with
``torch.load(..., weights_only=True)``: a model file can hold tensors and plain values, never code.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from torch import Tensor, nn

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.core.properties import unit_of
from crystal_studio.ml.batching import CrystalBatch, CrystalGraph, build_graphs, collate
from crystal_studio.ml.kinds import DIFFERENTIABLE_KINDS, PREDICTOR_KINDS, get_kind
from crystal_studio.ml.metrics import metrics_per_target
from crystal_studio.ml.models.gnn import CrystalGNN, GNNConfig
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project

MODEL_FILE_FORMAT = "crystal-studio-model/1"


class CrystalPredictor(nn.Module):
    """Ensemble of ``members`` GNNs predicting ``targets``; see the module docstring."""

    def __init__(self, config: GNNConfig, targets: Sequence[str], members: int = 1):
        super().__init__()
        if config.n_targets != len(targets):
            raise ValueError(f"config has {config.n_targets} outputs for {len(targets)} targets")
        self.config = config
        self.targets = list(targets)
        self.members = nn.ModuleList(CrystalGNN(config) for _ in range(members))
        self.register_buffer("target_mean", torch.zeros(len(targets)))
        self.register_buffer("target_std", torch.ones(len(targets)))
        # the members' spread is multiplied by this, fitted on the validation split (1: not recalibrated)
        self.register_buffer("spread_scale", torch.ones(len(targets)))

    @property
    def cutoff(self) -> float:
        """Neighbour cutoff radius in Å."""
        return self.config.cutoff

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Per-target mean and standard deviation (physical units) that members' outputs are scaled by."""
        self.target_mean.copy_(torch.as_tensor(mean, dtype=self.target_mean.dtype))
        self.target_std.copy_(torch.as_tensor(std, dtype=self.target_std.dtype))

    def normalization(self) -> dict[str, dict]:
        """{target: {"mean", "std", "unit"}} as stored beside the model."""
        return {t: {"mean": float(m), "std": float(s), "unit": unit_of(t)}
                for t, m, s in zip(self.targets, self.target_mean.tolist(), self.target_std.tolist(), strict=True)}

    def member_predictions(self, batch: CrystalBatch) -> Tensor:
        """(K, B, T) predictions of every member in physical units."""
        if not batch.has_edges:
            batch = batch.with_edges(self.cutoff)
        normalized = torch.stack([member(batch) for member in self.members])
        return normalized * self.target_std + self.target_mean

    def forward(self, batch: CrystalBatch) -> tuple[Tensor, Tensor]:
        """Ensemble mean and standard deviation over members, each (B, T) in physical units
        (the deviation is 0 for a single member)."""
        outputs = self.member_predictions(batch)
        return outputs.mean(dim=0), outputs.std(dim=0, correction=0) * self.spread_scale


# --------------------------------------------------------------------------------------------------
# Serialization and the store
# --------------------------------------------------------------------------------------------------


def saved_bytes(obj) -> bytes:
    """Plain data (a state dict, a resumable training state) serialized with ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def state_bytes(module: nn.Module) -> bytes:
    """The module's ``state_dict`` serialized with ``torch.save``."""
    return saved_bytes(module.state_dict())


def load_state(blob: bytes, where: str) -> dict:
    """A state dict (or other plain data) from bytes, loaded safely (weights only)."""
    try:
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CrystalStudioError(f"{where}: not a readable weights-only checkpoint ({_refusal_reason(exc)})") from None


def _refusal_reason(exc: Exception) -> str:
    """Why torch refused a checkpoint, in one line and without torch's advice to load it unsafely."""
    text = str(exc)
    code = re.search(r"unsupported global:?\s+(?:GLOBAL\s+)?(\S+)", text, re.IGNORECASE)
    if code:
        return f"it asks to run code ({code.group(1)}), which a weights-only file never does; refused"
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if detail:
        return detail.group(1).strip()
    if isinstance(exc, EOFError):
        return "the data ends too early (a truncated file)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return "unreadable data" if "weights_only" in first else first


def reopened_run(project: Project, run_id: int, config):
    """What every kind's resume starts from: the stored run, the device and torch threads ``config``
    asks for (set here), and the run's saved resumable state (None when it saved none)."""
    from crystal_studio.ml.runtime import resolve_device, set_threads

    run = model_store.get_run(project, run_id)
    device = resolve_device(config.device)
    set_threads(config.threads)
    blob = model_store.load_run_state(project, run_id)
    return run, device, (load_state(blob, f"run {run_id} state file {model_store.run_state_path(project, run_id)}")
                          if blob is not None else None)


def predictor_from_parts(hyperparameters: dict, targets: list[str], state: dict, where: str) -> CrystalPredictor:
    """Rebuild a predictor from its stored hyperparameters and state dict."""
    try:
        config = GNNConfig.from_dict(hyperparameters["model"])
        predictor = CrystalPredictor(config, targets, int(hyperparameters["members"]))
        state = {"spread_scale": torch.ones(len(targets)), **state}  # models stored before recalibration existed
        predictor.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CrystalStudioError(f"{where}: checkpoint does not match its hyperparameters ({exc})") from None
    return predictor.eval()


def hyperparameters_of(predictor: CrystalPredictor, training: dict | None = None) -> dict:
    """The JSON stored in the ``hyperparameters`` column for a predictor."""
    return {"model": predictor.config.as_dict(), "members": len(predictor.members), "training": training or {}}


def save_predictor(project: Project, predictor: CrystalPredictor, name: str, metrics: dict,
                   training: dict | None = None, dataset_id: int | None = None, run_id: int | None = None,
                   complete_run: str | None = None) -> int:
    """Store a predictor as a model of kind ``gnn``; returns the model id (see
    :func:`crystal_studio.store.models.add_model` for ``complete_run``)."""
    return model_store.add_model(
        project, name=name, kind="gnn", targets=predictor.targets,
        hyperparameters=hyperparameters_of(predictor, training), normalization=predictor.normalization(),
        metrics=metrics, checkpoint=state_bytes(predictor), dataset_id=dataset_id, run_id=run_id,
        complete_run=complete_run)


def load_predictor(project: Project, model_id: int, device: torch.device | str = "cpu",
                   differentiable: bool = False) -> tuple[model_store.ModelRecord, nn.Module]:
    """A stored model and its predictor (in eval mode, on ``device``).

    With ``differentiable``, only kinds that gradient optimizers can backpropagate through (soft atom
    types, lattice, coordinates) are accepted.
    """
    record = model_store.get_model(project, model_id)
    if record.kind not in PREDICTOR_KINDS:
        raise CrystalStudioError(f"model {model_id} is a '{record.kind}' model, not a property predictor")
    if differentiable and record.kind not in DIFFERENTIABLE_KINDS:
        raise CrystalStudioError(
            f"model {model_id} ({record.kind}) is not differentiable in atom types, so an optimizer cannot "
            f"follow its gradients; choose a {' or '.join(DIFFERENTIABLE_KINDS)} model to optimize against and "
            "use this one as the judge")
    where = f"model {model_id}"
    predictor = get_kind(record.kind).load().rebuild(record.hyperparameters, record.targets,
                                                     load_state(record.checkpoint, where), where)
    return record, predictor.to(device)


def export_model_file(project: Project, model_id: int, path: str | Path) -> Path:
    """Write a stored model to a file that :func:`import_model_file` reads (weights and metadata only)."""
    record = model_store.get_model(project, model_id)
    meta = {"name": record.name, "kind": record.kind, "targets": record.targets,
            "hyperparameters": record.hyperparameters, "normalization": record.normalization,
            "metrics": record.metrics, "dataset": record.dataset, "created": record.created}
    path = Path(path)
    torch.save({"format": MODEL_FILE_FORMAT, "meta": json.dumps(meta),
                "state_dict": load_state(record.checkpoint, f"model {model_id}")}, path)
    return path


MODEL_FILE_LIMIT = 1 << 30  # bytes; the shipped models are a few MB


def import_model_file(project: Project, path: str | Path, name: str | None = None) -> int:
    """Store the model in a file written by :func:`export_model_file`; returns the new model id."""
    from crystal_studio.core.io import read_regular

    path = Path(path)
    if not path.exists():
        raise CrystalStudioError(f"{path}: no such model file")
    doc = load_state(read_regular(path, MODEL_FILE_LIMIT), str(path))
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FILE_FORMAT:
        raise CrystalStudioError(f"{path}: not a Crystal Studio model file")
    meta = json.loads(doc["meta"])
    kind = meta.get("kind", "gnn")
    if kind not in PREDICTOR_KINDS:
        raise CrystalStudioError(f"{path}: model kind '{kind}' is not known to this version")
    module = get_kind(kind).load()
    model = module.rebuild(meta["hyperparameters"], meta["targets"], doc["state_dict"], str(path))
    return module.save(project, model, name or meta["name"], meta["metrics"], meta["hyperparameters"].get("training"))


# --------------------------------------------------------------------------------------------------
# Predicting and evaluating
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_graphs(predictor: CrystalPredictor, graphs: Sequence[CrystalGraph], batch_size: int = 64
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and spread, each (len(graphs), T) in physical units, for cached graphs."""
    device = predictor.target_mean.device
    predictor.eval()
    means, stds = [], []
    for start in range(0, len(graphs), batch_size):
        mean, std = predictor(collate(graphs[start:start + batch_size]).to(device))
        means.append(mean.float().cpu().numpy())
        stds.append(std.float().cpu().numpy())
    if not means:
        empty = np.zeros((0, len(predictor.targets)))
        return empty, empty.copy()
    return np.concatenate(means), np.concatenate(stds)


def predict_structures(predictor: CrystalPredictor, structures: Sequence[Structure], batch_size: int = 64,
                       progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and spread, each (n, T) in physical units, for ordered structures of elements
    the models cover (CrystalStudioError otherwise)."""
    cancel = cancel or CancelToken()
    if not isinstance(predictor, CrystalPredictor):  # kinds with their own featurization (chgnet_transfer)
        return predictor.predict_structures(structures, progress=progress, cancel=cancel)
    means, stds = [np.zeros((0, len(predictor.targets)))], [np.zeros((0, len(predictor.targets)))]
    chunk = max(batch_size, 256)
    for start in range(0, len(structures), chunk):
        cancel.check()
        mean, std = predict_graphs(predictor, build_graphs(structures[start:start + chunk], predictor.cutoff),
                                   batch_size)
        means.append(mean)
        stds.append(std)
        progress(ProgressEvent(min(start + chunk, len(structures)), len(structures), "predicting"))
    return np.concatenate(means), np.concatenate(stds)


def evaluate_structures(predictor: CrystalPredictor, structures: Sequence[Structure],
                        properties: Sequence[dict[str, float]], batch_size: int = 64,
                        progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
                        with_spread: bool = False) -> tuple:
    """(number of structures with at least one target known, metrics per target) of ``predictor``
    on labelled structures; ``properties`` holds each structure's known values by canonical name.
    With ``with_spread`` also the (n, T) spreads and the indices of the structures they belong to."""
    y = np.array([[props.get(t, np.nan) for t in predictor.targets] for props in properties], dtype=np.float64)
    labelled = np.isfinite(y).any(axis=1) if len(y) else np.zeros(0, dtype=bool)
    if not labelled.any():
        raise CrystalStudioError(
            f"no structure has a value for any of the model's targets ({', '.join(predictor.targets)})")
    chosen = [s for s, keep in zip(structures, labelled, strict=True) if keep]
    mean, std = predict_structures(predictor, chosen, batch_size, progress, cancel)
    metrics = metrics_per_target(predictor.targets, y[labelled], mean, std)
    if with_spread:
        return len(chosen), metrics, std, np.flatnonzero(labelled).tolist()
    return len(chosen), metrics
