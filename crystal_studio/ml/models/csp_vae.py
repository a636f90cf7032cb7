"""Composition-conditioned crystal VAE with latent energy surrogates (model kind ``csp_vae``; LCOMs,
``shared/methods.md`` §2).

The model answers crystal structure prediction: for a *given* list of atoms, which lattice and
coordinates? Crystals use the padded, canonically ordered site arrays of
:mod:`crystal_studio.ml.models.crystal_vae` (at most ``max_sites`` sites).

- **Encoder**: sin/cos coordinate channels, occupancy and element one-hot per slot → 1-D convolutions
  over the site axis; with the standardized lattice (a, b, c in Å, α, β, γ in degrees) → MLP → latent
  mean and log-variance.
- **Condition**: the element one-hot slots alone → convolutions → a composition feature vector.
- **Decoder**: (z, condition features) → standardized lattice (MLP) and fractional coordinates per
  slot (site decoder). The species of every decode are the conditioning slots themselves, so a decode
  always has exactly the requested atoms.
- **Energy surrogates** E(z, c): MLPs with two hidden layers (``surrogate_hidden`` wide, leaky ReLU)
  on the latent and the composition's fraction vector over
  :data:`~crystal_studio.ml.elements.ELEMENTS`, predicting energy per atom (eV/atom; standardized
  inside). Two are trained on the same latents: ``conservative`` with the COMs regularizer
  (:func:`surrogate_loss`) and ``mse``, the plain-regression ablation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from pymatgen.core import Structure
from torch import Tensor, nn

from crystal_studio.ml.elements import N_ELEMENTS
from crystal_studio.ml.models.crystal_vae import (
    EMPTY,
    N_CLASSES,
    CrystalArrays,
    SiteDecoder,
    SiteEncoder,
    arrays_to_structures,
    coordinate_channels,
    coordinate_error,
    kl_divergence,
    mlp,
    reparameterize,
    skip_reason,
    structure_arrays,
)

SURROGATES = ("conservative", "mse")


@dataclass
class CspVAEConfig:
    """Architecture of a composition-conditioned crystal VAE (stored with the model)."""

    max_sites: int = 12
    latent: int = 32
    hidden: int = 256  # MLP width and condition feature size
    channels: int = 64  # conv channels over the site list
    surrogate_hidden: int = 2048  # width of the energy surrogates' two hidden layers (paper: 2048)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> CspVAEConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def composition_vector(species: Tensor) -> Tensor:
    """(B, S) slot species → (B, N_ELEMENTS) atomic fractions of the occupied slots."""
    counts = nn.functional.one_hot(species, N_CLASSES)[..., :N_ELEMENTS].sum(dim=1).float()
    return counts / counts.sum(dim=1, keepdim=True).clamp(min=1.0)


class LatentEnergy(nn.Module):
    """E(z, c): energy per atom (eV/atom) from a latent and a composition fraction vector."""

    def __init__(self, latent: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent + N_ELEMENTS, hidden), nn.LeakyReLU(),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, 1))
        self.register_buffer("energy_mean", torch.zeros(()))
        self.register_buffer("energy_std", torch.ones(()))

    def standardized(self, z: Tensor, composition: Tensor) -> Tensor:
        """(B,) predicted energies in units of the training set's spread around its mean."""
        return self.net(torch.cat([z, composition], dim=1)).squeeze(1)

    def forward(self, z: Tensor, composition: Tensor) -> Tensor:
        """(B,) predicted energies per atom, eV/atom."""
        return self.standardized(z, composition) * self.energy_std + self.energy_mean


def mine_adversarial_latents(energy: LatentEnergy, z: Tensor, composition: Tensor, steps: int,
                             step_size: float) -> Tensor:
    """z⁺: ``steps`` gradient-descent steps of ``step_size`` (latent units per standardized-energy
    gradient) on the surrogate from ``z`` — where an optimizer of the current surrogate would go."""
    z_plus = z.detach()
    for _ in range(steps):
        z_plus = z_plus.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy.standardized(z_plus, composition).sum(), z_plus)
        z_plus = (z_plus - step_size * grad).detach()
    return z_plus


def surrogate_loss(energy: LatentEnergy, z: Tensor, composition: Tensor, target: Tensor, alpha: float,
                   mining_steps: int, mining_step_size: float, gap_limit: float) -> dict[str, Tensor]:
    """The surrogate's training terms on standardized targets ``target`` (B,):

    ``mse``; with ``alpha`` > 0 also ``gap`` = mean E(z⁺) − mean E(z) (standardized) on mined latents
    z⁺, and ``loss`` = mse − alpha · min(gap, gap_limit): the COMs regularizer pushes the prediction
    *up* where gradient steps lead and down on the data, up to a gap of ``gap_limit`` (beyond it the
    term stops pulling, which keeps the surrogate bounded). With ``alpha`` = 0, ``loss`` = mse.
    """
    predicted = energy.standardized(z, composition)
    mse = (predicted - target).square().mean()
    if alpha <= 0:
        return {"loss": mse, "mse": mse}
    z_plus = mine_adversarial_latents(energy, z, composition, mining_steps, mining_step_size)
    gap = energy.standardized(z_plus, composition).mean() - predicted.mean()
    return {"loss": mse - alpha * torch.clamp(gap, max=gap_limit), "mse": mse, "gap": gap}


class CspVAE(nn.Module):
    """Encoder, composition condition, conditioned decoders and two energy surrogates; see the module
    docstring."""

    def __init__(self, config: CspVAEConfig):
        super().__init__()
        self.config = config
        c, s = config, config.max_sites
        self.site_encoder = SiteEncoder(7 + N_CLASSES, c.channels, s, c.hidden // 2)  # → (B, hidden)
        self.encoder_head = mlp(c.hidden + 6, c.hidden, 2 * c.latent)
        self.condition = SiteEncoder(N_CLASSES, c.channels, s, c.hidden // 2)
        self.lattice_decoder = mlp(c.latent + c.hidden, c.hidden, 6)
        self.coord_decoder = SiteDecoder(c.latent + c.hidden, c.channels, s, 3)
        self.surrogates = nn.ModuleDict({name: LatentEnergy(c.latent, c.surrogate_hidden) for name in SURROGATES})
        self.register_buffer("lattice_mean", torch.zeros(6))
        self.register_buffer("lattice_std", torch.ones(6))

    # ---------------------------------------------------------------- arrays

    def tensors(self, arrays: CrystalArrays) -> tuple[Tensor, Tensor, Tensor]:
        device = self.lattice_mean.device
        return (torch.as_tensor(arrays.lattice, dtype=torch.float32, device=device),
                torch.as_tensor(arrays.coords, dtype=torch.float32, device=device),
                torch.as_tensor(arrays.species, device=device))

    def structure_tensors(self, structures: list[Structure]) -> tuple[Tensor, Tensor, Tensor]:
        """Raw arrays of ``structures`` (ValueError naming the first that does not fit the model)."""
        for s in structures:
            reason = skip_reason(s, self.config.max_sites)
            if reason:
                raise ValueError(f"{s.composition.reduced_formula}: {reason}")
        arrays, _, _ = structure_arrays(structures, self.config.max_sites)
        return self.tensors(arrays)

    def _onehot(self, species: Tensor) -> Tensor:
        return nn.functional.one_hot(species, N_CLASSES).float().transpose(1, 2)

    # ---------------------------------------------------------------- encoder and decoder

    def encode_distribution(self, lattice: Tensor, coords: Tensor, species: Tensor) -> tuple[Tensor, Tensor]:
        """Latent mean and log-variance (B, latent) of crystals given as raw arrays."""
        occupied = (species != EMPTY).float()
        channels = torch.cat([coordinate_channels(coords, occupied), self._onehot(species)], dim=1)
        lat = (lattice - self.lattice_mean) / self.lattice_std
        mu, logvar = self.encoder_head(torch.cat([self.site_encoder(channels), lat], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    @torch.no_grad()
    def encode(self, lattice: Tensor, coords: Tensor, species: Tensor) -> Tensor:
        """(B, latent) latent means."""
        return self.encode_distribution(lattice, coords, species)[0]

    def decode_tensors(self, z: Tensor, species: Tensor) -> tuple[Tensor, Tensor]:
        """Raw lattice (B, 6; Å and degrees) and fractional coordinates (B, S, 3) for latents ``z`` and
        the slots ``species`` they are decoded for (differentiable)."""
        features = torch.cat([z, self.condition(self._onehot(species))], dim=1)
        lattice = self.lattice_decoder(features) * self.lattice_std + self.lattice_mean
        return lattice, self.coord_decoder(features).transpose(1, 2)

    @torch.no_grad()
    def decode(self, z: Tensor, species: Tensor) -> tuple[list[Structure | None], list[str | None]]:
        """Structures of exactly the atoms in ``species`` (B, S) from latents ``z``, and per entry the
        reason it is None (see :func:`~crystal_studio.ml.models.crystal_vae.arrays_to_structures`)."""
        lattice, coords = self.decode_tensors(z, species)
        return arrays_to_structures(lattice.cpu().numpy().astype(np.float64),
                                    coords.cpu().numpy().astype(np.float64), species.cpu().numpy())

    # ---------------------------------------------------------------- losses

    def vae_losses(self, lattice: Tensor, coords: Tensor, species: Tensor,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Per-batch means: ``lattice_recon`` (squared error of the standardized parameters, summed),
        ``coord_recon`` (squared periodic error in Å² summed over occupied sites) and ``kl`` (nats)."""
        mu, logvar = self.encode_distribution(lattice, coords, species)
        z = reparameterize(mu, logvar, generator)
        decoded_lattice, decoded_coords = self.decode_tensors(z, species)
        lattice_error = ((decoded_lattice - lattice) / self.lattice_std).square().sum(dim=1).mean()
        return {"lattice_recon": lattice_error,
                "coord_recon": coordinate_error(decoded_coords, coords, species, lattice),
                "kl": kl_divergence(mu, logvar)}
