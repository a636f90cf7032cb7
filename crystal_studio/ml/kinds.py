"""The kinds of property predictor, described without importing torch (the CLI and GUI list them)."""

from __future__ import annotations

# kind -> what a user picks it for
PREDICTOR_KINDS: dict[str, str] = {
    "gnn": "Crystal GNN (message passing, differentiable: optimizers follow its gradients)",
    "chgnet_transfer": "CHGNet transfer (frozen CHGNet features + MLP heads; accurate, not differentiable)",
}
# kinds a gradient optimizer can backpropagate through (soft atom types, lattice, coordinates)
DIFFERENTIABLE_KINDS: tuple[str, ...] = ("gnn",)
# default model sizes and training length per kind (TrainConfig's own defaults are the gnn's)
KIND_DEFAULTS: dict[str, dict] = {
    "gnn": {"hidden": 64, "layers": 3, "batch_size": 64, "epochs": 100, "patience": 20},
    "chgnet_transfer": {"hidden": 256, "layers": 3, "batch_size": 256, "epochs": 100, "patience": 40},
}
