"""Model kind ``gnn``: the differentiable crystal GNN (:mod:`crystal_studio.ml.models.gnn`) in
ensembles (:class:`~crystal_studio.ml.predictor.CrystalPredictor`), trained by
:mod:`crystal_studio.ml.training`."""

from crystal_studio.ml.predictor import predictor_from_parts as rebuild
from crystal_studio.ml.predictor import save_predictor as save
from crystal_studio.ml.training import resume_gnn as resume
from crystal_studio.ml.training import train_gnn as train

__all__ = ["rebuild", "resume", "save", "train"]
