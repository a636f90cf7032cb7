"""SMOACS (Fujii et al., arXiv 2410.08562): gradient optimization of soft perovskites; see
:mod:`crystal_studio.design.optimizers.smoacs`."""

from crystal_studio.design.methods import MethodRequest
from crystal_studio.design.optimizers.smoacs import SmoacsConfig, SmoacsOptimizer

CONFIG = SmoacsConfig


def build(request: MethodRequest, config: SmoacsConfig) -> SmoacsOptimizer:
    return SmoacsOptimizer(request.spec, request.predictor, request.n_candidates, request.n_steps, request.seed,
                           request.device, config)
