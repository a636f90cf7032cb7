"""Court et al. networks on voxel maps (model kinds ``voxel_unet`` and ``voxel_vae``; ``shared/methods.md`` §4).

- :class:`VoxelUNet`: a 3-D U-Net segmenting a density map (B, n, n, n) into species classes per voxel
  (class 0 empty, class k the k-th element of its vocabulary). Convolutions pad circularly, since a
  crystal's cell is periodic. Its encoder's hidden layers are also the feature extractor of the
  deep-feature-consistent loss.
- :class:`ConditionalVoxelVAE`: a 3-D conv encoder over density + coordinate channels (Å divided by
  :data:`LENGTH_SCALE`) + the condition (one-hot decile of a property, as constant channels) down to
  4³, a Gaussian latent (256-d by default), and a transposed-conv decoder fed the latent and the
  condition, giving back density (softplus, ≥ 0) and coordinate channels.
- :class:`VoxelGenerator`: the trained VAE, the frozen U-Net and the condition's decile edges; decodes
  latents into crystals (decoded map → U-Net species → peaks → :class:`~pymatgen.core.Structure`).

Loss of the VAE per crystal (batch mean): Σ_voxels (density error)² + Σ_voxels (coordinate error /
LENGTH_SCALE)² + ``feature_weight`` · Σ_layers Σ_voxels mean_channels (U-Net feature error)² +
β · KL(q(z|x) ‖ N(0, I)).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from pymatgen.core import Structure
from torch import Tensor, nn

from crystal_studio.ml.elements import MAX_Z
from crystal_studio.ml.voxels import coordinate_channels, maps_to_structure, voxelize_structures

LENGTH_SCALE = 10.0  # Å; coordinate channels enter and leave the networks divided by this
BOTTLENECK = 4  # voxels per side where the VAE encoder stops downsampling


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, 4), channels)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two periodic 3×3×3 convolutions, each with group norm and SiLU."""
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1, padding_mode="circular"), _group_norm(c_out), nn.SiLU(),
        nn.Conv3d(c_out, c_out, 3, padding=1, padding_mode="circular"), _group_norm(c_out), nn.SiLU())


@dataclass
class VoxelUNetConfig:
    """Architecture of a voxel U-Net (stored with the model): ``grid`` voxels per side, ``channels`` at
    the first level (doubled per level), ``levels`` resolutions, ``elements`` the atomic numbers of
    classes 1..K (class 0 is empty space)."""

    grid: int = 32
    channels: int = 16
    levels: int = 3
    elements: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> VoxelUNetConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    @property
    def n_classes(self) -> int:
        return len(self.elements) + 1


class VoxelUNet(nn.Module):
    """3-D U-Net: density (B, n, n, n) → species logits (B, K + 1, n, n, n)."""

    def __init__(self, config: VoxelUNetConfig):
        super().__init__()
        if config.grid % 2 ** (config.levels - 1):
            raise ValueError(f"grid {config.grid} is not divisible by 2^{config.levels - 1} (levels {config.levels})")
        self.config = config
        widths = [config.channels * 2 ** level for level in range(config.levels)]
        self.down = nn.ModuleList([_conv_block(1, widths[0])] + [_conv_block(widths[k - 1], widths[k])
                                                                 for k in range(1, config.levels)])
        self.up = nn.ModuleList([nn.ConvTranspose3d(widths[k], widths[k - 1], 2, stride=2)
                                 for k in range(config.levels - 1, 0, -1)])
        self.merge = nn.ModuleList([_conv_block(2 * widths[k - 1], widths[k - 1])
                                    for k in range(config.levels - 1, 0, -1)])
        self.head = nn.Conv3d(widths[0], config.n_classes, 1)
        to_class = torch.zeros(MAX_Z + 1, dtype=torch.long)
        to_class[torch.as_tensor(config.elements, dtype=torch.long)] = torch.arange(1, config.n_classes)
        self.register_buffer("to_class", to_class, persistent=False)
        self.register_buffer("to_number", torch.as_tensor([0, *config.elements], dtype=torch.long), persistent=False)

    def features(self, density: Tensor) -> list[Tensor]:
        """The encoder's hidden layers, one per level (the deep features of the consistency loss)."""
        x = density[:, None]
        out = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool3d(x, 2))
            out.append(x)
        return out

    def forward(self, density: Tensor) -> Tensor:
        skips = self.features(density)
        x = skips[-1]
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)

    def classes(self, numbers: Tensor) -> Tensor:
        """Class indices of an atomic-number map; elements outside the vocabulary count as empty."""
        return self.to_class[numbers.long()]

    def segmentation_loss(self, density: Tensor, numbers: Tensor) -> Tensor:
        """Mean cross-entropy per voxel of the segmentation against the true species map."""
        return F.cross_entropy(self(density), self.classes(numbers))

    @torch.no_grad()
    def species(self, density: Tensor) -> Tensor:
        """Atomic-number map (B, n, n, n) of the most likely class per voxel (0 empty)."""
        return self.to_number[self(density).argmax(dim=1)]


@dataclass
class VoxelVAEConfig:
    """Architecture of a conditional voxel VAE (stored with the model): ``grid`` voxels per side (a
    power of two, at least 8), ``channels`` of the first conv layer (doubled per downsampling),
    ``latent`` dimensions, ``n_conditions`` condition classes (deciles; 0: unconditioned)."""

    grid: int = 32
    channels: int = 16
    latent: int = 256
    n_conditions: int = 10

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> VoxelVAEConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    @property
    def downsamplings(self) -> int:
        return int(round(math.log2(self.grid / BOTTLENECK)))


class ConditionalVoxelVAE(nn.Module):
    """Conditional VAE on density + coordinate maps; see the module docstring."""

    def __init__(self, config: VoxelVAEConfig):
        super().__init__()
        if config.grid < 2 * BOTTLENECK or config.grid != BOTTLENECK * 2 ** config.downsamplings:
            raise ValueError(f"grid must be a power of two of at least {2 * BOTTLENECK} (got {config.grid})")
        self.config = config
        widths = [config.channels * 2 ** k for k in range(config.downsamplings + 1)]
        encoder: list[nn.Module] = [nn.Conv3d(4 + config.n_conditions, widths[0], 3, padding=1,
                                              padding_mode="circular"), nn.SiLU()]
        for k in range(config.downsamplings):
            encoder += [nn.Conv3d(widths[k], widths[k + 1], 4, stride=2, padding=1, padding_mode="circular"),
                        _group_norm(widths[k + 1]), nn.SiLU()]
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        flat = widths[-1] * BOTTLENECK ** 3
        self.to_latent = nn.Linear(flat + config.n_conditions, 2 * config.latent)
        self.from_latent = nn.Sequential(nn.Linear(config.latent + config.n_conditions, flat), nn.SiLU())
        decoder: list[nn.Module] = []
        for k in range(config.downsamplings, 0, -1):
            decoder += [nn.ConvTranspose3d(widths[k], widths[k - 1], 4, stride=2, padding=1),
                        _group_norm(widths[k - 1]), nn.SiLU()]
        self.decoder = nn.Sequential(*decoder, nn.Conv3d(widths[0], 4, 3, padding=1, padding_mode="circular"))
        self.bottom = widths[-1]

    def encode(self, density: Tensor, coordinates: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """Latent mean and log-variance (B, latent) of maps (B, n, n, n), coordinate channels
        (B, 3, n, n, n) in Å and conditions (B, n_conditions)."""
        n = self.config.grid
        planes = condition[:, :, None, None, None].expand(-1, -1, n, n, n)
        x = torch.cat([density[:, None], coordinates / LENGTH_SCALE, planes], dim=1)
        mu, logvar = self.to_latent(torch.cat([self.encoder(x), condition], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-20.0, 10.0)

    def decode(self, z: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """Density (B, n, n, n) and coordinate channels (B, 3, n, n, n) in Å of latents (B, latent)."""
        x = self.from_latent(torch.cat([z, condition], dim=1))
        x = self.decoder(x.reshape(len(z), self.bottom, BOTTLENECK, BOTTLENECK, BOTTLENECK))
        return F.softplus(x[:, 0]), x[:, 1:] * LENGTH_SCALE

    def losses(self, density: Tensor, coordinates: Tensor, condition: Tensor, unet: VoxelUNet,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The loss terms per crystal (batch means): ``density``, ``coordinates``, ``features`` (through
        the frozen ``unet``'s hidden layers) and ``kl``; see the module docstring."""
        mu, logvar = self.encode(density, coordinates, condition)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device)
        recon_density, recon_coordinates = self.decode(mu + noise * (0.5 * logvar).exp(), condition)
        voxels = self.config.grid ** 3
        features = torch.zeros((), device=mu.device)
        with torch.no_grad():
            target_features = unet.features(density)
        for got, want in zip(unet.features(recon_density), target_features, strict=True):
            features = features + (got - want).square().mean(dim=(1, 2, 3, 4)).mean() * voxels
        return {
            "density": (recon_density - density).square().sum(dim=(1, 2, 3)).mean(),
            "coordinates": ((recon_coordinates - coordinates) / LENGTH_SCALE).square().sum(dim=(1, 2, 3, 4)).mean(),
            "features": features,
            "kl": (-0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=1)).mean(),
        }


def one_hot_deciles(values: np.ndarray, edges: np.ndarray) -> Tensor:
    """Conditions (N, len(edges) + 1): the one-hot decile of each value between the bin ``edges``
    (ascending); all zeros where a value is NaN (unknown)."""
    out = torch.zeros((len(values), len(edges) + 1))
    known = np.isfinite(values)
    out[np.flatnonzero(known), np.searchsorted(edges, values[known], side="right")] = 1.0
    return out


class VoxelGenerator(nn.Module):
    """A trained conditional voxel VAE with its U-Net and the condition's decile edges (stored together
    as one ``voxel_vae`` model): turns latents and deciles into crystals and crystals into latents."""

    def __init__(self, vae_config: VoxelVAEConfig, unet_config: VoxelUNetConfig, width_scale: float):
        super().__init__()
        self.vae = ConditionalVoxelVAE(vae_config)
        self.unet = VoxelUNet(unet_config)
        self.width_scale = width_scale
        self.register_buffer("decile_edges", torch.zeros(max(vae_config.n_conditions - 1, 0), dtype=torch.float64))

    @property
    def config(self) -> VoxelVAEConfig:
        return self.vae.config

    def conditions(self, deciles: Tensor) -> Tensor:
        """One-hot conditions (B, n_conditions) of decile indices (B,) counted from 0."""
        return F.one_hot(deciles.long(), self.config.n_conditions).float() if self.config.n_conditions else (
            torch.zeros((len(deciles), 0), device=deciles.device))

    def decile_of(self, value: float) -> int:
        """The decile index (from 0) of a property value under the training set's edges."""
        return int(np.searchsorted(self.decile_edges.cpu().numpy(), value, side="right"))

    @torch.no_grad()
    def encode_structures(self, structures: list[Structure], condition: Tensor) -> Tensor:
        """Latent means (B, latent) of voxelizable ``structures`` under conditions (B, n_conditions)."""
        device = self.decile_edges.device
        maps = voxelize_structures(structures, self.config.grid, self.width_scale)
        coordinates = coordinate_channels(maps.lattice, self.config.grid)
        mu, _ = self.vae.encode(maps.density.to(device), coordinates.to(device), condition.to(device))
        return mu

    @torch.no_grad()
    def decode_maps(self, z: Tensor, condition: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Decoded density, U-Net species (atomic numbers) and coordinate channels of latents (B, latent)
        under conditions (B, n_conditions)."""
        density, coordinates = self.vae.decode(z, condition.to(z.device))
        return density, self.unet.species(density), coordinates

    def decode(self, z: Tensor, condition: Tensor) -> tuple[list[Structure | None], list[str | None]]:
        """Crystals decoded from latents under conditions, with a reason wherever there is none."""
        density, species, coordinates = (t.float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy()
                                         for t in self.decode_maps(z, condition))
        results = [maps_to_structure(density[k], species[k], coordinates[k]) for k in range(len(z))]
        return [s for s, _ in results], [r for _, r in results]
