"""Learned models: ``gnn``, the differentiable crystal property network, and ``chgnet_transfer``, heads on
frozen CHGNet descriptors (see :mod:`crystal_studio.ml.kinds`)."""

from crystal_studio.ml.kinds import PREDICTOR_KINDS
from crystal_studio.ml.models.gnn import CrystalGNN, GNNConfig

MODEL_KINDS = tuple(PREDICTOR_KINDS)

__all__ = ["MODEL_KINDS", "CrystalGNN", "GNNConfig"]
