"""Crystal-LSBO VAE family (model kind ``crystal_vae``; after Boyar et al., ``shared/methods.md`` §3).

A crystal is three parts, each with its own VAE, and a combined VAE over their latents:

- **Lattice-VAE**: a, b, c (Å) and α, β, γ (degrees), standardized with the training set's mean and
  spread → MLP encoder → 3-d latent → MLP decoder.
- **Coordinate-VAE**: the fractional coordinates of up to ``max_sites`` sites as a padded site list;
  the encoder sees sin/cos of 2π·x (so 0.99 and 0.01 are neighbours) and an occupancy channel; 1-D
  convolutions over the site axis → 16-d latent; the decoder predicts coordinates, compared
  periodically (the error is wrapped to [−½, ½) and measured in Å with the crystal's own lattice).
- **Element-VAE**: one-hot over :data:`~crystal_studio.ml.elements.ELEMENTS` plus an *empty* class
  per slot (index :data:`EMPTY`), 1-D conv encoder → 16-d latent; a slot decoded as empty holds no atom.
- **Combined-VAE**: MLP over the concatenated sub-latent means (3 + 16 + 16) → 20-d material latent;
  its decoder gives back the three sub-latents, which the sub-decoders turn into a crystal.

Each of the four is co-trained with a property head on its latent when the model has targets
(standardized; missing values are masked).

Sites are put in one canonical order before encoding, so the conv encoders see a consistent layout:
by Pauling electronegativity (pymatgen's usual order: cations before anions; elements without one
last), then atomic number, then the wrapped fractional coordinates x, y, z.

Decoding any latent gives a :class:`~pymatgen.core.Structure` or a reason why not ("non-finite
decode", "non-physical lattice", "no occupied site"): lengths are clamped to :data:`LENGTH_RANGE` Å,
angles to :data:`ANGLE_RANGE` degrees, atoms come from the occupied slots and coordinates are
wrapped to [0, 1).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from pymatgen.core import Element, Lattice, Structure
from torch import Tensor, nn

from crystal_studio.core.structures import min_periodic_distance
from crystal_studio.ml.elements import ELEMENTS, N_ELEMENTS, element_index

EMPTY = N_ELEMENTS  # class of an empty slot
N_CLASSES = N_ELEMENTS + 1
LENGTH_RANGE = (1.0, 40.0)  # Å, decoded lattice lengths are clamped to this
ANGLE_RANGE = (30.0, 150.0)  # degrees
MIN_DISTANCE = 0.5  # Å, field-standard structural validity
MIN_VOLUME = 0.1  # Å³


@dataclass
class CrystalVAEConfig:
    """Architecture of a crystal VAE (stored with the model)."""

    max_sites: int = 20
    lattice_latent: int = 3
    coord_latent: int = 16
    element_latent: int = 16
    latent: int = 20  # combined (material) latent
    hidden: int = 128  # MLP width (lattice, combined, property heads)
    channels: int = 64  # conv channels of the site encoders and decoders
    n_targets: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> CrystalVAEConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    @property
    def part_latent(self) -> int:
        return self.lattice_latent + self.coord_latent + self.element_latent


# ------------------------------------------------------------------------------------------ arrays


@dataclass
class CrystalArrays:
    """Crystals as padded arrays: ``lattice`` (N, 6) a, b, c in Å and α, β, γ in degrees; ``coords``
    (N, S, 3) fractional in [0, 1) (0 in empty slots); ``species`` (N, S) indices into ELEMENTS,
    :data:`EMPTY` in empty slots."""

    lattice: np.ndarray
    coords: np.ndarray
    species: np.ndarray

    def __len__(self) -> int:
        return len(self.lattice)


def _electronegativity(symbol: str) -> float:
    x = Element(symbol).X
    return float(x) if x is not None and math.isfinite(x) else 10.0


def canonical_sites(structure: Structure) -> tuple[list[str], np.ndarray]:
    """Species and wrapped fractional coordinates in the canonical site order (electronegativity,
    atomic number, then x, y, z)."""
    frac = np.mod(np.round(structure.frac_coords, 6), 1.0)
    symbols = [site.specie.symbol for site in structure]
    order = sorted(range(len(symbols)), key=lambda i: (_electronegativity(symbols[i]), Element(symbols[i]).Z,
                                                       *frac[i]))
    return [symbols[i] for i in order], frac[order]


def skip_reason(structure: Structure, max_sites: int) -> str | None:
    """Why ``structure`` cannot be encoded with ``max_sites`` slots (None when it can)."""
    if len(structure) > max_sites:
        return f"more than {max_sites} sites"
    if not structure.is_ordered:
        return "partial occupancy"
    bad = sorted({site.specie.symbol for site in structure} - set(ELEMENTS))
    if bad:
        return f"element(s) not covered: {', '.join(bad)}"
    return None


def structure_arrays(structures: list[Structure], max_sites: int) -> tuple[CrystalArrays, list[int], Counter]:
    """Padded arrays of the encodable ``structures``, the indices of those kept, and the skipped
    ones counted by reason."""
    kept, skipped = [], Counter()
    lattice, coords, species = [], [], []
    for k, structure in enumerate(structures):
        reason = skip_reason(structure, max_sites)
        if reason is not None:
            skipped[reason] += 1
            continue
        symbols, frac = canonical_sites(structure)
        c = np.zeros((max_sites, 3))
        s = np.full(max_sites, EMPTY, dtype=np.int64)
        c[:len(symbols)] = frac
        s[:len(symbols)] = [element_index(x) for x in symbols]
        lattice.append([*structure.lattice.abc, *structure.lattice.angles])
        coords.append(c)
        species.append(s)
        kept.append(k)
    return (CrystalArrays(np.array(lattice, dtype=np.float64).reshape(-1, 6),
                          np.array(coords, dtype=np.float64).reshape(-1, max_sites, 3),
                          np.array(species, dtype=np.int64).reshape(-1, max_sites)), kept, skipped)


def lattice_matrices(lattice: Tensor) -> Tensor:
    """(B, 6) lattice parameters (Å, degrees) → (B, 3, 3) row-vector lattice matrices (pymatgen's
    convention of :meth:`Lattice.from_parameters`; NaN rows for impossible angle sets)."""
    a, b, c = lattice[:, 0], lattice[:, 1], lattice[:, 2]
    alpha, beta, gamma = (torch.deg2rad(lattice[:, k]) for k in (3, 4, 5))
    ca, cb, cg = alpha.cos(), beta.cos(), gamma.cos()
    sa, sb = alpha.sin(), beta.sin()
    val = ((ca * cb - cg) / (sa * sb)).clamp(-1.0, 1.0)
    gamma_star = torch.arccos(val)
    zero = torch.zeros_like(a)
    va = torch.stack([a * sb, zero, a * cb], dim=1)
    vb = torch.stack([-b * sa * gamma_star.cos(), b * sa * gamma_star.sin(), b * ca], dim=1)
    vc = torch.stack([zero, zero, c], dim=1)
    return torch.stack([va, vb, vc], dim=1)


def cell_volume_factor(angles: np.ndarray) -> np.ndarray:
    """V / (abc) for angles (…, 3) in degrees; ≤ 0 for impossible angle sets."""
    ca, cb, cg = (np.cos(np.deg2rad(angles[..., k])) for k in range(3))
    return np.sqrt(np.clip(1 - ca ** 2 - cb ** 2 - cg ** 2 + 2 * ca * cb * cg, 0.0, None))


def arrays_to_structures(lattice: np.ndarray, coords: np.ndarray, species: np.ndarray
                         ) -> tuple[list[Structure | None], list[str | None]]:
    """Decoded arrays → structures, with a failure reason wherever the structure is None."""
    structures: list[Structure | None] = []
    reasons: list[str | None] = []
    lengths = np.clip(lattice[:, :3], *LENGTH_RANGE)
    angles = np.clip(lattice[:, 3:], *ANGLE_RANGE)
    factor = cell_volume_factor(angles)
    for k in range(len(lattice)):
        occupied = species[k] != EMPTY
        if not (np.isfinite(lattice[k]).all() and np.isfinite(coords[k]).all()):
            structures.append(None)
            reasons.append("non-finite decode")
        elif factor[k] < 1e-3:
            structures.append(None)
            reasons.append("non-physical lattice")
        elif not occupied.any():
            structures.append(None)
            reasons.append("no occupied site")
        else:
            cell = Lattice.from_parameters(*lengths[k], *angles[k])
            frac = np.mod(coords[k][occupied], 1.0)
            frac[frac >= 1.0] = 0.0  # mod of a tiny negative number can round to 1.0
            structures.append(Structure(cell, [ELEMENTS[i] for i in species[k][occupied]], frac))
            reasons.append(None)
    return structures, reasons


def structurally_valid(structure: Structure) -> bool:
    """Field-standard structural validity (CDVAE/DiffCSP): every interatomic distance, periodic images
    included, at least 0.5 Å and a volume of at least 0.1 Å³."""
    return structure.volume >= MIN_VOLUME and min_periodic_distance(structure) >= MIN_DISTANCE


# ------------------------------------------------------------------------------------------ modules


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


class SiteEncoder(nn.Module):
    """(B, C, S) site channels → 1-D convolutions over the site axis → (B, 2·latent)."""

    def __init__(self, n_in: int, channels: int, sites: int, latent: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(n_in, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(channels * sites, 2 * latent))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SiteDecoder(nn.Module):
    """(B, latent) → (B, C_out, S) per-slot outputs (linear expansion, then convolutions)."""

    def __init__(self, latent: int, channels: int, sites: int, n_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent, channels * sites), nn.ReLU(), nn.Unflatten(1, (channels, sites)),
                                 nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(channels, n_out, 1))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class _VAE(nn.Module):
    """An encoder giving mean and log-variance, a decoder and an optional property head on the latent."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent: int, hidden: int, n_targets: int):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.head = mlp(latent, hidden, n_targets) if n_targets else None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)


def coordinate_channels(coords: Tensor, occupied: Tensor) -> Tensor:
    """(B, S, 3) fractional coordinates and (B, S) occupancy (0–1) → (B, 7, S) encoder channels:
    sin and cos of 2π·x, y, z and the occupancy, zero in empty slots."""
    angle = 2 * math.pi * coords
    channels = torch.cat([angle.sin(), angle.cos(), occupied[..., None]], dim=2) * occupied[..., None]
    return channels.transpose(1, 2)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None) -> Tensor:
    noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + noise * (0.5 * logvar).exp()


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    return (-0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=1)).mean()


def _property_loss(head: nn.Module | None, z: Tensor, y: Tensor | None) -> Tensor:
    """Mean squared error of standardized targets over the known values, summed over targets."""
    if head is None or y is None:
        return torch.zeros((), device=z.device)
    pred = head(z)
    known = torch.isfinite(y)
    err = torch.where(known, pred - torch.nan_to_num(y), torch.zeros_like(pred)).square()
    return (err.sum(dim=0) / known.sum(dim=0).clamp(min=1)).sum()


def coordinate_error(pred: Tensor, coords: Tensor, species: Tensor, lattice: Tensor) -> Tensor:
    """Mean over crystals of the squared periodic coordinate error (Å², with the true lattice) summed
    over occupied sites; ``pred`` and ``coords`` (B, S, 3) fractional."""
    delta = pred - coords
    delta = delta - torch.round(delta)
    cart = torch.bmm(delta, lattice_matrices(lattice))
    occupied = (species != EMPTY).to(cart.dtype)
    return (cart.square().sum(dim=2) * occupied).sum(dim=1).mean()


PARTS = ("lattice", "coord", "element", "combined")


class CrystalVAE(nn.Module):
    """Lattice-, Coordinate-, Element- and Combined-VAE with property heads (see the module docstring)."""

    def __init__(self, config: CrystalVAEConfig):
        super().__init__()
        self.config = config
        c, s, t = config, config.max_sites, config.n_targets
        self.lattice = _VAE(mlp(6, c.hidden, 2 * c.lattice_latent), mlp(c.lattice_latent, c.hidden, 6),
                            c.lattice_latent, c.hidden, t)
        self.coord = _VAE(SiteEncoder(7, c.channels, s, c.coord_latent), SiteDecoder(c.coord_latent, c.channels, s, 3),
                          c.coord_latent, c.hidden, t)
        self.element = _VAE(SiteEncoder(N_CLASSES, c.channels, s, c.element_latent),
                            SiteDecoder(c.element_latent, c.channels, s, N_CLASSES), c.element_latent, c.hidden, t)
        self.combined = _VAE(mlp(c.part_latent, c.hidden, 2 * c.latent), mlp(c.latent, c.hidden, c.part_latent),
                             c.latent, c.hidden, t)
        self.register_buffer("lattice_mean", torch.zeros(6))
        self.register_buffer("lattice_std", torch.ones(6))
        self.register_buffer("target_mean", torch.zeros(t))
        self.register_buffer("target_std", torch.ones(t))

    # ---------------------------------------------------------------- inputs

    def inputs(self, lattice: Tensor, coords: Tensor, species: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encoder inputs from raw arrays: standardized lattice (B, 6), coordinate channels (B, 7, S)
        and element one-hot (B, N_CLASSES, S)."""
        lat = (lattice - self.lattice_mean) / self.lattice_std
        occupied = (species != EMPTY).to(coords.dtype)
        onehot = torch.nn.functional.one_hot(species, N_CLASSES).to(coords.dtype)
        return lat, coordinate_channels(coords, occupied), onehot.transpose(1, 2)

    def part_means(self, lattice: Tensor, coords: Tensor, species: Tensor) -> Tensor:
        """(B, 3 + 16 + 16) concatenated sub-latent means."""
        lat, coord_in, onehot = self.inputs(lattice, coords, species)
        return torch.cat([self.lattice.encode(lat)[0], self.coord.encode(coord_in)[0],
                          self.element.encode(onehot)[0]], dim=1)

    @torch.no_grad()
    def encode(self, lattice: Tensor, coords: Tensor, species: Tensor) -> Tensor:
        """(B, latent) combined latent means of crystals given as raw arrays (see :class:`CrystalArrays`)."""
        return self.combined.encode(self.part_means(lattice, coords, species))[0]

    def encode_structures(self, structures: list[Structure]) -> Tensor:
        """Combined latent means of ``structures`` (ValueError naming the first that cannot be encoded)."""
        for s in structures:
            reason = skip_reason(s, self.config.max_sites)
            if reason:
                raise ValueError(f"{s.composition.reduced_formula}: {reason}")
        arrays, _, _ = structure_arrays(structures, self.config.max_sites)
        return self.encode(*self.tensors(arrays))

    def tensors(self, arrays: CrystalArrays) -> tuple[Tensor, Tensor, Tensor]:
        device = self.lattice_mean.device
        return (torch.as_tensor(arrays.lattice, dtype=torch.float32, device=device),
                torch.as_tensor(arrays.coords, dtype=torch.float32, device=device),
                torch.as_tensor(arrays.species, device=device))

    # ---------------------------------------------------------------- losses

    def losses(self, lattice: Tensor, coords: Tensor, species: Tensor, targets: Tensor | None = None,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Per-batch means of every term: ``{part}_recon`` (lattice: squared error of the standardized
        parameters, summed; coord: squared periodic coordinate error in Å² summed over occupied sites;
        element: cross-entropy in nats summed over slots; combined: squared error of the sub-latent
        means, summed), ``{part}_kl`` (nats) and, with targets, ``{part}_property`` (MSE of standardized
        targets over known values, summed over targets). ``targets`` are raw (NaN where unknown)."""
        lat, coord_in, onehot = self.inputs(lattice, coords, species)
        y = None
        if targets is not None and self.config.n_targets:
            y = (targets - self.target_mean) / self.target_std
        out: dict[str, Tensor] = {}
        means = []
        for part, x in (("lattice", lat), ("coord", coord_in), ("element", onehot)):
            vae = getattr(self, part)
            mu, logvar = vae.encode(x)
            z = reparameterize(mu, logvar, generator)
            decoded = vae.decoder(z)
            if part == "lattice":
                out["lattice_recon"] = (decoded - lat).square().sum(dim=1).mean()
            elif part == "coord":
                out["coord_recon"] = coordinate_error(decoded.transpose(1, 2), coords, species, lattice)
            else:
                out["element_recon"] = nn.functional.cross_entropy(decoded, species, reduction="none").sum(dim=1).mean()
            out[f"{part}_kl"] = kl_divergence(mu, logvar)
            if y is not None:
                out[f"{part}_property"] = _property_loss(vae.head, z, y)
            means.append(mu)
        parts = torch.cat(means, dim=1).detach()  # the combined VAE models the sub-latents; it does not move them
        mu, logvar = self.combined.encode(parts)
        z = reparameterize(mu, logvar, generator)
        out["combined_recon"] = (self.combined.decoder(z) - parts).square().sum(dim=1).mean()
        out["combined_kl"] = kl_divergence(mu, logvar)
        if y is not None:
            out["combined_property"] = _property_loss(self.combined.head, z, y)
        return out

    # ---------------------------------------------------------------- decoding

    @torch.no_grad()
    def decode_parts(self, parts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sub-latents (B, 3 + 16 + 16) → raw lattice (B, 6), coordinates (B, S, 3), species (B, S)."""
        c = self.config
        zl, zc, ze = parts.split([c.lattice_latent, c.coord_latent, c.element_latent], dim=1)
        lattice = self.lattice.decoder(zl) * self.lattice_std + self.lattice_mean
        coords = self.coord.decoder(zc).transpose(1, 2)
        species = self.element.decoder(ze).argmax(dim=1)
        return lattice, coords, species

    @torch.no_grad()
    def decode_arrays(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Combined latents (B, latent) → combined decoder → sub-latents → sub-decoders → raw arrays."""
        return self.decode_parts(self.combined.decoder(z))

    @torch.no_grad()
    def decode(self, z: Tensor) -> tuple[list[Structure | None], list[str | None]]:
        """Structures decoded from combined latents ``z`` (B, latent), and per entry the reason it is
        None ("non-finite decode", "non-physical lattice", "no occupied site"; None for a structure)."""
        lattice, coords, species = (t.cpu().numpy() for t in self.decode_arrays(z))
        return arrays_to_structures(lattice.astype(np.float64), coords.astype(np.float64), species)

    def consistency_loss(self, z: Tensor) -> Tensor:
        """Latent-consistency loss of LCA-LSBO: mean squared distance between combined latents ``z``
        (B, latent) and the latent means of their own decodes, re-encoded. Differentiable through
        decoders and encoders: element slots enter the encoder as their softmax probabilities and the
        occupancy as one minus the empty-class probability."""
        c = self.config
        zl, zc, ze = self.combined.decoder(z).split([c.lattice_latent, c.coord_latent, c.element_latent], dim=1)
        lat = self.lattice.decoder(zl)  # standardized, as the encoder sees it
        coords = self.coord.decoder(zc).transpose(1, 2)
        probabilities = self.element.decoder(ze).softmax(dim=1)  # (B, N_CLASSES, S)
        occupied = 1.0 - probabilities[:, EMPTY]
        parts = torch.cat([self.lattice.encode(lat)[0], self.coord.encode(coordinate_channels(coords, occupied))[0],
                           self.element.encode(probabilities)[0]], dim=1)
        return (self.combined.encode(parts)[0] - z).square().sum(dim=1).mean()

    @torch.no_grad()
    def predict(self, z: Tensor) -> Tensor | None:
        """Property-head predictions (B, n_targets) in the targets' units from combined latents (None
        without targets)."""
        if self.combined.head is None:
            return None
        return self.combined.head(z) * self.target_std + self.target_mean
