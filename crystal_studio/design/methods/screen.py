"""Screening baseline: rank a dataset's structures under the predictor; see
:class:`crystal_studio.design.optimizers.baselines.DatasetScreening`."""

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.design.methods import MethodRequest

CONFIG = None


def build(request: MethodRequest, _config: None):
    from crystal_studio.design.optimizers.baselines import DatasetScreening

    if not request.dataset:
        raise CrystalStudioError("screening needs a dataset (--dataset NAME)")
    return DatasetScreening(request.spec, request.predictor, request.project, request.dataset, request.n_candidates,
                            request.seed, request.device, request.executor)
