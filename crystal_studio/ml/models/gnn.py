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
tensors, without Python loops over crystals or atoms. On a CPU the message step runs as one fused,
chunked kernel with a hand-written backward (:class:`_GatedMessages`, same arithmetic as the plain
autograd version up to float rounding, about 1.6x faster per training step; see docs/benchmarks.md).
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
    lattice = batch.lattice.index_select(0, batch.crystal.index_select(0, batch.center))
    frac = batch.frac.index_select(0, batch.neighbor) - batch.frac.index_select(0, batch.center) + batch.shift
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
        x = d.unsqueeze(-1) - self.centers
        if torch.is_grad_enabled() and d.requires_grad:
            return torch.exp(-torch.clamp((x / self.width).square(), max=30.0))
        return x.div_(self.width).square_().clamp_(max=30.0).neg_().exp_()  # same values, one buffer


EDGE_CHUNK = 4096  # edges per chunk of the fused CPU message kernel (keeps its temporaries in cache)


def _gated_messages_reference(xc: Tensor, xn: Tensor, basis: Tensor, weight: Tensor, envelope: Tensor,
                              center: Tensor, neighbor: Tensor) -> Tensor:
    """(N, hidden) sum over the edges of each center atom of
    ``sigmoid(z_gate) * silu(z_core) * envelope`` with ``z = xc[center] + xn[neighbor] + basis @ weight.T``,
    written with plain autograd operations (the definition :class:`_GatedMessages` must reproduce)."""
    z = xc[center] + xn[neighbor] + F.linear(basis, weight)
    gate, core = z.chunk(2, dim=-1)
    messages = torch.sigmoid(gate) * F.silu(core) * envelope.unsqueeze(-1)
    return messages.new_zeros((xc.shape[0], messages.shape[1])).index_add_(0, center, messages)


class _GatedMessages(torch.autograd.Function):
    """:func:`_gated_messages_reference` computed in chunks of edges, with a hand-written backward.

    On a CPU the message step is bound by memory traffic, not arithmetic: every (E, 2 hidden) temporary
    of the plain version is tens of MiB for a training batch, written and re-read several times (and
    freshly page-faulted). Here each chunk's temporaries stay in cache, only ``z`` (E, 2 hidden) is kept
    for the backward, and gathers use ``index_select`` (whose backward is a cheap ``index_add_``).
    Same arithmetic as the reference up to float rounding; first derivatives only.
    """

    @staticmethod
    def forward(ctx, xc: Tensor, xn: Tensor, basis: Tensor, weight: Tensor, envelope: Tensor, center: Tensor,
                neighbor: Tensor, chunk: int) -> Tensor:
        n_edges, width = center.shape[0], xc.shape[1] // 2
        out = xc.new_zeros((xc.shape[0], width))
        z = xc.new_empty((n_edges, 2 * width))
        weight_t = weight.t()
        for a in range(0, n_edges, chunk):
            b = min(a + chunk, n_edges)
            c = center[a:b]
            zc = z[a:b]
            torch.index_select(xc, 0, c, out=zc)
            zc.add_(xn.index_select(0, neighbor[a:b]))
            zc.addmm_(basis[a:b], weight_t)
            m = torch.sigmoid(zc[:, :width])
            m.mul_(F.silu(zc[:, width:])).mul_(envelope[a:b].unsqueeze(-1))
            out.index_add_(0, c, m)
        ctx.save_for_backward(xc, xn, basis, weight, envelope, center, neighbor, z)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        xc, xn, basis, weight, envelope, center, neighbor, z = ctx.saved_tensors
        need_xc, need_xn, need_basis, need_weight, need_env = ctx.needs_input_grad[:5]
        n_edges, width = z.shape[0], z.shape[1] // 2
        grad_out = grad_out.contiguous()
        grad_xc = torch.zeros_like(xc) if need_xc else None
        grad_xn = torch.zeros_like(xn) if need_xn else None
        grad_basis = torch.empty_like(basis) if need_basis else None
        grad_weight = torch.zeros_like(weight) if need_weight else None
        grad_env = torch.empty_like(envelope) if need_env else None
        for a in range(0, n_edges, ctx.chunk):
            b = min(a + ctx.chunk, n_edges)
            c = center[a:b]
            gate, core = z[a:b, :width], z[a:b, width:]
            sg = torch.sigmoid(gate)
            sc = torch.sigmoid(core)
            silu = core * sc
            g = grad_out.index_select(0, c)  # dL/dm of every edge of the chunk
            if need_env:
                grad_env[a:b] = (g * sg * silu).sum(dim=1)
            g.mul_(envelope[a:b].unsqueeze(-1))
            dz = z.new_empty((b - a, 2 * width))
            # d sigmoid(x) = s (1 - s);  d silu(x) = s (1 + x (1 - s))
            torch.mul(g, silu, out=dz[:, :width]).mul_(sg * (1.0 - sg))
            torch.mul(g, sg, out=dz[:, width:]).mul_(sc * (1.0 + core * (1.0 - sc)))
            if need_xc:
                grad_xc.index_add_(0, c, dz)
            if need_xn:
                grad_xn.index_add_(0, neighbor[a:b], dz)
            if need_weight:
                grad_weight.addmm_(dz.t(), basis[a:b])
            if need_basis:
                torch.mm(dz, weight, out=grad_basis[a:b])
        return grad_xc, grad_xn, grad_basis, grad_weight, grad_env, None, None, None


def gated_messages(xc: Tensor, xn: Tensor, basis: Tensor, weight: Tensor, envelope: Tensor, center: Tensor,
                   neighbor: Tensor, fused: bool | None = None) -> Tensor:
    """Summed gated messages (see :func:`_gated_messages_reference`); ``fused`` (default: on CPU) uses the
    chunked kernel :class:`_GatedMessages`, otherwise plain autograd operations (as on a GPU, where
    one big operation per step is faster and autocast applies)."""
    if fused is None:
        fused = xc.device.type == "cpu" and not torch.is_autocast_enabled(xc.device.type)
    if not fused:
        return _gated_messages_reference(xc, xn, basis, weight, envelope, center, neighbor)
    dtype = xc.dtype
    return _GatedMessages.apply(xc, xn.to(dtype), basis.to(dtype), weight.to(dtype), envelope.to(dtype), center,
                                neighbor, EDGE_CHUNK)


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
                scale: float, fused: bool | None = None) -> Tensor:
        x = self.norm(h)
        summed = gated_messages(self.center(x), self.neighbor(x), basis, self.edge.weight, envelope, center,
                                neighbor, fused)
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
        # message kernel: None picks the fused chunked one on CPU, the plain one elsewhere (not saved)
        self.fused: bool | None = None

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
            h = conv(h, basis, envelope, batch.center, batch.neighbor, scale, self.fused)
        h = self.norm(h)
        pooled = h.new_zeros((batch.num_crystals, h.shape[1])).index_add_(0, batch.crystal, h)
        pooled = pooled / batch.n_atoms.unsqueeze(-1).to(pooled.dtype)
        return self.head(pooled)
