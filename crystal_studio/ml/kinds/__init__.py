"""The registry of model kinds: one line per kind naming the module that implements it.

A kind module is imported only when the kind is used, so listing kinds stays free of torch. Each
module defines:

- ``train(project, dataset, config, name, progress, cancel) -> TrainResult``: a new stored run and model;
- ``resume(project, run_id, config, progress, cancel) -> TrainResult``: finish an interrupted run;
- ``rebuild(hyperparameters, targets, state, where)``: the model from its stored parts (eval mode);
- ``save(project, model, name, metrics, training) -> model id``: store a model (e.g. one read from a file).

``config`` is a :class:`~crystal_studio.ml.training.TrainConfig`; a kind's own defaults for it are in
:attr:`KindInfo.defaults`. Adding a kind is one module in this package and one line below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

from crystal_studio.core.errors import CrystalStudioError

ROLES = ("predictor", "differentiable")  # what a kind's models can do in a design run


@dataclass(frozen=True)
class KindInfo:
    """What the CLI and GUI know of a model kind before importing it."""

    name: str
    title: str
    roles: tuple[str, ...]  # 'predictor': predicts properties; 'differentiable': optimizers follow its gradients
    module: str
    defaults: dict = field(default_factory=dict)  # TrainConfig values that differ from its own defaults

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


KINDS: dict[str, KindInfo] = {k.name: k for k in (
    KindInfo("gnn", "Crystal GNN (message passing, differentiable: optimizers follow its gradients)",
             ("predictor", "differentiable"), "crystal_studio.ml.kinds.gnn",
             {"hidden": 64, "layers": 3, "batch_size": 64, "epochs": 100, "patience": 20}),
    KindInfo("chgnet_transfer", "CHGNet transfer (frozen CHGNet features + MLP heads; accurate, not differentiable)",
             ("predictor",), "crystal_studio.ml.kinds.chgnet_transfer",
             {"hidden": 256, "layers": 3, "batch_size": 256, "epochs": 100, "patience": 40}),
)}

# views of the registry used by the CLI and the panels
PREDICTOR_KINDS: dict[str, str] = {k.name: k.title for k in KINDS.values() if "predictor" in k.roles}
DIFFERENTIABLE_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if "differentiable" in k.roles)
KIND_DEFAULTS: dict[str, dict] = {k.name: dict(k.defaults) for k in KINDS.values()}


def get_kind(name: str) -> KindInfo:
    """The registered kind ``name``; CrystalStudioError listing the kinds otherwise."""
    if name not in KINDS:
        raise CrystalStudioError(f"unknown model kind '{name}' (choose {', '.join(KINDS)})")
    return KINDS[name]
