"""A CGCNN-style periodic message-passing network that is smooth in the geometry and the atom types.

Architecture (after Xie & Grossman, PRL 120, 145301 (2018), changed for gradient-based design):

- **Embedding**: a site with element probabilities ``p`` (one-hot for a real crystal) starts as
  ``h = p @ E``, where the element table ``E = features @ W + free`` combines a projection of
  elemental properties (:func:`~crystal_studio.ml.elements.element_feature_table`) with a learned
  vector per element. Hard types (indices) use the same table by lookup.
- **Edges**: every periodic neighbour within ``cutoff`` Å (no maximum neighbour count, which would be
  discontinuous); the distance ``d`` is expanded in Gaussians centred on [0, cutoff] and every message
  is multiplied by the cosine envelope ``0.5 (1 + cos(pi d / cutoff))``, which goes to zero with zero
  slope at the cutoff, so the output is continuously differentiable when neighbours enter or leave.
- **Gated convolutions** with pre-layer normalization and residual updates::

      z_ij = A LN(h)_i + B LN(h)_j + C g(d_ij);   m_ij = sigmoid(z_ij^gate) * silu(z_ij^core) * env(d_ij)
      h_i <- h_i + W silu(sum_j m_ij / avg_neighbors)

- **Readout**: mean of the atom states of each crystal (intensive targets), then an MLP to T outputs.

Outputs are in normalized target units; :class:`~crystal_studio.ml.predictor.CrystalPredictor` turns
them into physical units and averages ensembles. All operations are batched over crystals with index
tensors, without Python loops over crystals or atoms.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.ml.batching import CrystalBatch
from crystal_studio.ml.elements import N_ELEMENTS, element_feature_table


@dataclass
class GNNConfig:
    """Architecture hyperparameters of :class:`CrystalGNN`."""

    n_targets: int
    hidden: int = 64  # width of atom states
    layers: int = 3  # message-passing steps
    cutoff: float = 5.0  # Å, neighbour cutoff radius
    n_gaussians: int = 40  # Gaussians in the distance expansion
    avg_neighbors: float = 30.0  # typical neighbour count; summed messages are divided by it
    n_elements: int = N_ELEMENTS  # size of the element vocabulary

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> GNNConfig:
        """Config from :meth:`as_dict` output (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def edge_lengths(batch: CrystalBatch) -> Tensor:
    """Length in Å of every edge of ``batch``, differentiable w.r.t. its lattice and coordinates."""
    lattice = batch.lattice[batch.crystal[batch.center]]
    frac = batch.frac[batch.neighbor] - batch.frac[batch.center] + batch.shift
    vectors = torch.einsum("ek,ekl->el", frac, lattice)
    return torch.sqrt(vectors.square().sum(dim=1) + 1e-12)  # the epsilon keeps gradients finite at d = 0


def cosine_envelope(d: Tensor, cutoff: float) -> Tensor:
    """0.5 (1 + cos(pi d / cutoff)) for d < cutoff, 0 beyond; value and slope vanish at the cutoff."""
    return 0.5 * (torch.cos(math.pi * torch.clamp(d / cutoff, max=1.0)) + 1.0)


class GaussianExpansion(nn.Module):
    """exp(-(d - mu_k)^2 / sigma^2) for ``n`` centres mu_k evenly spaced on [0, cutoff] Å, sigma = spacing.

    The exponent is capped at 30 (values below 1e-13 stay there): floats that underflow towards
    zero are subnormal, and subnormals make CPU matrix products ten times slower.
    """

    def __init__(self, cutoff: float, n: int):
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, cutoff, n))
        self.width = cutoff / (n - 1)

    def forward(self, d: Tensor) -> Tensor:
        return torch.exp(-torch.clamp(((d.unsqueeze(-1) - self.centers) / self.width).square(), max=30.0))


class GatedConvolution(nn.Module):
    """One CGCNN-style gated message-passing step with a pre-norm residual update."""

    def __init__(self, hidden: int, n_gaussians: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.center = nn.Linear(hidden, 2 * hidden)
        self.neighbor = nn.Linear(hidden, 2 * hidden, bias=False)
        self.edge = nn.Linear(n_gaussians, 2 * hidden, bias=False)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, basis: Tensor, envelope: Tensor, center: Tensor, neighbor: Tensor,
                scale: float) -> Tensor:
        x = self.norm(h)
        z = self.center(x)[center] + self.neighbor(x)[neighbor] + self.edge(basis)
        gate, core = z.chunk(2, dim=-1)
        messages = torch.sigmoid(gate) * F.silu(core) * envelope.unsqueeze(-1)
        summed = messages.new_zeros((h.shape[0], messages.shape[1])).index_add_(0, center, messages)
        return h + self.out(F.silu(summed * scale))


class CrystalGNN(nn.Module):
    """Maps a :class:`CrystalBatch` to (B, n_targets) normalized predictions; see the module docstring."""

    def __init__(self, config: GNNConfig):
        super().__init__()
        if config.n_elements != N_ELEMENTS:
            raise CrystalStudioError(
                f"model made for {config.n_elements} elements, this version knows {N_ELEMENTS}")
        self.config = config
        hidden = config.hidden
        self.register_buffer("element_features", torch.tensor(element_feature_table(), dtype=torch.float32))
        self.element_projection = nn.Linear(self.element_features.shape[1], hidden)
        self.element_free = nn.Parameter(0.1 * torch.randn(config.n_elements, hidden))
        self.expansion = GaussianExpansion(config.cutoff, config.n_gaussians)
        self.convolutions = nn.ModuleList(GatedConvolution(hidden, config.n_gaussians) for _ in range(config.layers))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, config.n_targets))

    def element_table(self) -> Tensor:
        """(n_elements, hidden) embedding of every element."""
        return self.element_projection(self.element_features) + self.element_free

    def embed(self, types: Tensor) -> Tensor:
        """Atom states from element indices (N,) or element probabilities (N, n_elements)."""
        table = self.element_table()
        if types.is_floating_point():
            return types @ table.to(types.dtype)
        return table[types]

    def forward(self, batch: CrystalBatch) -> Tensor:
        """(B, n_targets) normalized predictions; builds the neighbour list if ``batch`` has none."""
        if not batch.has_edges:
            batch = batch.with_edges(self.config.cutoff)
        with torch.autocast(batch.frac.device.type, enabled=False):  # geometry stays in full precision
            d = edge_lengths(batch)
            envelope = cosine_envelope(d, self.config.cutoff)
            basis = self.expansion(d)
        h = self.embed(batch.types)
        scale = 1.0 / self.config.avg_neighbors
        for conv in self.convolutions:
            h = conv(h, basis, envelope, batch.center, batch.neighbor, scale)
        h = self.norm(h)
        pooled = h.new_zeros((batch.num_crystals, h.shape[1])).index_add_(0, batch.crystal, h)
        pooled = pooled / batch.n_atoms.unsqueeze(-1).to(pooled.dtype)
        return self.head(pooled)
