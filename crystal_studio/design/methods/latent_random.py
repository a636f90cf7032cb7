"""Random latent search: uniform draws from the crystal VAE's latent box with LSBO's budget, scored by
the same black box; the baseline of the latent methods (:class:`~crystal_studio.design.optimizers.lsbo.RandomLatentSearch`)."""

from crystal_studio.design.methods import MethodRequest
from crystal_studio.design.methods.lsbo import build_latent_search
from crystal_studio.design.optimizers.settings import LatentSearchConfig

CONFIG = LatentSearchConfig


def build(request: MethodRequest, config: LatentSearchConfig):
    from crystal_studio.design.optimizers.lsbo import RandomLatentSearch

    return build_latent_search(request, config, RandomLatentSearch)
