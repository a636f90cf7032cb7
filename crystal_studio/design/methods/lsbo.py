"""LSBO (Boyar et al., Crystal-LSBO): Bayesian optimization in a crystal VAE's latent space; see
:mod:`crystal_studio.design.optimizers.lsbo`. The GP seeds come from the crystal VAE's training dataset."""

from __future__ import annotations

import numpy as np

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.design.methods import MethodRequest
from crystal_studio.design.optimizers.settings import LatentSearchConfig, LSBOConfig
from crystal_studio.store.project import StructureQuery

CONFIG = LSBOConfig


def require_generator(request: MethodRequest) -> None:
    """CrystalStudioError unless the request carries the crystal VAE a latent method searches."""
    if request.generator is None:
        raise CrystalStudioError("latent-space methods need a crystal VAE (--generator MODEL_ID)")


def generator_dataset(request: MethodRequest) -> str:
    """The name of the crystal VAE's training dataset; CrystalStudioError when the project no longer has it
    (deleted, or the model was imported), since its crystals seed the search."""
    dataset = request.generator_record.dataset
    if not dataset or dataset not in request.project.dataset_names():
        raise CrystalStudioError(f"the crystal VAE (model {request.generator_record.id}) was trained on a dataset "
                                 "this project no longer has; its crystals seed the search")
    return dataset


def seed_pool(request: MethodRequest, size: int) -> list:
    """Up to ``size`` (0: all) random valid, encodable structures of the crystal VAE's training dataset."""
    from crystal_studio.ml.models.crystal_vae import skip_reason

    dataset = generator_dataset(request)
    ids = request.project.ids(StructureQuery(dataset=dataset, valid_only=True))
    if size and len(ids) > size:
        ids = sorted(np.random.default_rng(request.seed).choice(ids, size, replace=False).tolist())
    max_sites = request.generator.config.max_sites
    pool = []
    for start in range(0, len(ids), 500):
        rows = request.project.iter_structures(StructureQuery(ids=ids[start:start + 500]))
        pool += [s for _, s in rows if skip_reason(s, max_sites) is None]
    if not pool:
        raise CrystalStudioError(f"no structure of '{dataset}' fits the crystal VAE (at most {max_sites} sites)")
    return pool


def build_latent_search(request: MethodRequest, config: LatentSearchConfig, cls: type | None = None,
                        retrain=None):
    """A latent-space search of class ``cls`` (default :class:`~crystal_studio.design.optimizers.lsbo.LatentSearch`)
    against the request's spec and predictor."""
    from crystal_studio.design.optimizers.lsbo import LatentSearch, SpecBlackBox

    cls = cls or LatentSearch
    require_generator(request)
    config.validate()
    predictor = request.predictor.to(request.device).eval()
    black_box = SpecBlackBox(request.spec, predictor, config.constraint_penalty)
    return cls(request.spec, black_box, request.generator, seed_pool(request, config.init_pool), request.n_candidates,
               request.n_steps, request.seed, config, retrain, list(predictor.targets))


def build(request: MethodRequest, config: LSBOConfig):
    return build_latent_search(request, config)
