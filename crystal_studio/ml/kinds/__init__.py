"""The registry of model kinds: one line per kind naming the module that implements it.

A kind module is imported only when the kind is used, so listing kinds stays free of torch. Each
module defines:

- ``train(project, dataset, config, name, progress, cancel) -> TrainResult``: a new stored run and model;
- ``resume(project, run_id, config, progress, cancel) -> TrainResult``: finish an interrupted run;
- ``rebuild(hyperparameters, targets, state, where)``: the model from its stored parts (eval mode);
- ``save(project, model, name, metrics, training) -> model id``: store a model (e.g. one read from a file).

``config`` is a :class:`~crystal_studio.ml.training.TrainConfig` (predictor kinds; a kind's own
defaults for it are in :attr:`KindInfo.defaults`), or the kind's own settings dataclass when its module
defines ``CONFIG`` (generative kinds). Adding a kind is one module in this package and one line below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields
from types import ModuleType

from crystal_studio.core.errors import CrystalStudioError

ROLES = ("predictor", "differentiable", "generator:composition", "generator:crystal", "csp")  # what a kind's models can do


@dataclass(frozen=True)
class KindInfo:
    """What the CLI and GUI know of a model kind before importing it."""

    name: str
    title: str
    roles: tuple[str, ...]  # 'predictor': predicts properties; 'differentiable': optimizers follow its gradients;
    # 'generator:composition': samples formulas; 'generator:crystal': samples and encodes whole crystals;
    # 'csp': decodes crystals of a given composition and predicts their energy (LCOMs structure prediction)
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
    KindInfo("composition_vae", "Composition VAE (formula fraction vectors, decomposition-class head; samples formulas)",
             ("generator:composition",), "crystal_studio.ml.kinds.composition_vae"),
    KindInfo("crystal_vae", "Crystal VAE (Crystal-LSBO: lattice, coordinate and element VAEs + combined latent; "
             "samples crystals)", ("generator:crystal",), "crystal_studio.ml.kinds.crystal_vae"),
    KindInfo("voxel_unet", "Voxel U-Net (Court et al.: segments voxel density maps into species)", (),
             "crystal_studio.ml.kinds.voxel_unet"),
    KindInfo("voxel_vae", "Conditional voxel VAE (Court et al.: density maps, deep-feature-consistent loss, U-Net "
             "segmentation; samples crystals)", ("generator:crystal",), "crystal_studio.ml.kinds.voxel_vae"),
    KindInfo("csp_vae", "Composition-conditioned crystal VAE + conservative and plain energy surrogates (LCOMs "
             "structure prediction)", ("csp",), "crystal_studio.ml.kinds.csp_vae"),
)}

# views of the registry used by the CLI and the panels
PREDICTOR_KINDS: dict[str, str] = {k.name: k.title for k in KINDS.values() if "predictor" in k.roles}
DIFFERENTIABLE_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if "differentiable" in k.roles)
GENERATOR_KINDS: dict[str, str] = {k.name: k.title for k in KINDS.values()
                                   if any(r.startswith("generator") for r in k.roles)}
CSP_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if "csp" in k.roles)
KIND_DEFAULTS: dict[str, dict] = {k.name: dict(k.defaults) for k in KINDS.values()}


def get_kind(name: str) -> KindInfo:
    """The registered kind ``name``; CrystalStudioError listing the kinds otherwise."""
    if name not in KINDS:
        raise CrystalStudioError(f"unknown model kind '{name}' (choose {', '.join(KINDS)})")
    return KINDS[name]


def config_class(name: str) -> type:
    """The settings dataclass of kind ``name``: its module's ``CONFIG``, else the predictors' TrainConfig."""
    module = get_kind(name).load()
    config = getattr(module, "CONFIG", None)
    if config is None:
        from crystal_studio.ml.training import TrainConfig

        config = TrainConfig
    return config


def config_for(name: str, targets: list[str], **settings):
    """A training config for kind ``name`` with ``settings`` (those that are None keep the defaults):
    :meth:`TrainConfig.for_kind` for predictor kinds; the kind's own ``CONFIG`` otherwise, which takes
    ``targets`` only when it has a ``targets`` field (optional property heads; CrystalStudioError if
    targets are given to a kind without one)."""
    cls = config_class(name)
    if hasattr(cls, "for_kind"):
        return cls.for_kind(name, targets, **settings)
    chosen = {k: v for k, v in settings.items() if v is not None}
    if targets:
        if "targets" not in {f.name for f in fields(cls)}:
            raise CrystalStudioError(f"a {name} model predicts no properties: leave out the targets")
        chosen["targets"] = list(targets)
    return cls(**chosen)
