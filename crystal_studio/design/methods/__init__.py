"""The registry of optimization methods: one line per method naming the module that implements it.

A method module is imported only when the method is used (like ASE's table of I/O formats), so
listing methods and ``crystal-studio --help`` stay free of torch. Each module defines:

- ``CONFIG``: its settings dataclass, fields declared with :func:`crystal_studio.core.options.option`
  (or None for a method without settings), from :mod:`crystal_studio.design.optimizers.settings`;
- ``build(request: MethodRequest, config) -> Optimizer``: the optimizer for one run.

A method module's top level imports no torch (its optimizer is imported inside ``build``), so the
Optimization panel's settings form and ``crystal-studio methods`` never wait for it.

Adding a method is one new module in this package and one :class:`MethodInfo` line below; the CLI
(``methods``, ``optimize --method/--set``), the Optimization panel and the conformance test pick it up.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.options import describe_options

FAMILIES = ("gradient", "latent", "sampler", "baseline")


@dataclass(frozen=True)
class MethodInfo:
    """What the CLI and GUI know of a method before importing it."""

    name: str
    title: str  # one line, shown in menus and 'crystal-studio methods'
    family: str  # one of FAMILIES
    needs: tuple[str, ...]  # model roles and inputs: 'predictor' (differentiable), 'dataset', 'generator' (a crystal VAE)
    module: str  # the implementing module (see the package docstring)

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def config_class(self) -> type | None:
        return self.load().CONFIG

    def describe(self) -> dict:
        """The entry of ``crystal-studio methods --json``."""
        return {"name": self.name, "title": self.title, "family": self.family, "needs": list(self.needs),
                "options": describe_options(self.config_class())}


@dataclass
class MethodRequest:
    """Everything a method's ``build`` gets for one run."""

    spec: object  # DesignSpec
    predictor: object  # the predictor (or PredictorSet) the method optimizes against
    project: object  # the open Project
    n_candidates: int
    n_steps: int
    seed: int
    device: object  # torch.device
    dataset: str | None  # the dataset to screen / judge novelty against
    generator: object = None  # the loaded crystal VAE, for methods that need a 'generator'
    generator_record: object = None  # its ModelRecord (training dataset, hyperparameters)
    executor: object = None  # where a method that splits its work into tasks runs them (None: here)


METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("smoacs", "SMOACS: gradient optimization of soft perovskites through the predictor", "gradient",
               ("predictor",), "crystal_studio.design.methods.smoacs"),
    MethodInfo("lsbo", "Crystal-LSBO: Bayesian optimization (GP + LogEI) in a crystal VAE's latent space", "latent",
               ("predictor", "generator"), "crystal_studio.design.methods.lsbo"),
    MethodInfo("lca-lsbo", "LCA-LSBO: LSBO retraining the VAE with latent-consistency augmentation at each new best",
               "latent", ("predictor", "generator"), "crystal_studio.design.methods.lca_lsbo"),
    MethodInfo("latent-random", "Random latent search: uniform draws in the crystal VAE's latent box, LSBO's budget",
               "baseline", ("predictor", "generator"), "crystal_studio.design.methods.latent_random"),
    MethodInfo("random", "Random search: random neutral perovskites, best unique of the same prediction budget",
               "baseline", ("predictor",), "crystal_studio.design.methods.random_search"),
    MethodInfo("screen", "Dataset screening: the best existing structures of a dataset under the predictor",
               "baseline", ("predictor", "dataset"), "crystal_studio.design.methods.screen"),
)}


def get_method(name: str) -> MethodInfo:
    """The registered method ``name``; CrystalStudioError listing the methods otherwise."""
    if name not in METHODS:
        raise CrystalStudioError(f"unknown method '{name}' (choose {', '.join(METHODS)})")
    return METHODS[name]
