"""Learned models. ``gnn``: the differentiable crystal property network."""

from crystal_studio.ml.models.gnn import CrystalGNN, GNNConfig

MODEL_KINDS = ("gnn",)

__all__ = ["MODEL_KINDS", "CrystalGNN", "GNNConfig"]
