"""Random-search baseline: random neutral perovskites scored like SMOACS; see
:class:`crystal_studio.design.optimizers.baselines.RandomSearch`."""

from crystal_studio.design.methods import MethodRequest
from crystal_studio.design.optimizers.settings import PerovskiteSearchConfig

CONFIG = PerovskiteSearchConfig


def build(request: MethodRequest, config: PerovskiteSearchConfig):
    from crystal_studio.design.optimizers.baselines import RandomSearch

    return RandomSearch(request.spec, request.predictor, request.n_candidates, request.n_steps, request.seed,
                        request.device, config)
