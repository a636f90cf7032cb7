"""Transfer from CHGNet: property heads on CHGNet's pretrained representation (model kind ``chgnet_transfer``).

CHGNet (weights inside its wheel) maps a crystal to a total energy through four message-passing
layers; its crystal feature is the 64-d pooled atom state before the energy readout. This kind keeps
CHGNet frozen and learns, per target:

- a **linear baseline** on the composition (atom fractions over the element vocabulary) and CHGNet's
  energy (eV/atom), fitted by ridge regression on the training split. For formation energy this is
  exactly "CHGNet energy minus fitted elemental reference energies"; for other targets it is a
  composition-average baseline;
- an **MLP correction** on the standardized features (CHGNet energy, CHGNet crystal feature, and
  composition statistics of elemental properties), trained on the residual of the baseline.

Ensembles are K MLP corrections from different seeds over one shared baseline; the spread of their
predictions is the uncertainty. The model is not differentiable in soft atom types (CHGNet embeds
integer atomic numbers), so gradient optimizers (SMOACS) use the crystal GNN; this kind serves as an
accurate screening model and as an independent judge.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from pymatgen.core import Structure
from torch import Tensor, nn

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.core.properties import NON_NEGATIVE
from crystal_studio.ml.elements import N_ELEMENTS, element_feature_table, element_index, unsupported_elements

CHGNET_FEATURES = 64  # width of CHGNet's crystal feature
COMPOSITION_STATS = ("mean", "std", "min", "max")  # statistics of elemental properties over a formula's atoms
FEATURE_CLAMP = 8.0  # standardized features are clipped to ± this many training standard deviations


def chgnet_model(device: str = "cpu"):
    """The CHGNet model shipped in its wheel (loaded once per device, shared with the oracle)."""
    from crystal_studio.oracles.chgnet_oracle import _load_model

    return _load_model(device)


@torch.no_grad()
def chgnet_descriptors(structures: Sequence[Structure], batch_size: int = 32, device: str = "cpu",
                       progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> np.ndarray:
    """(n, 1 + 64) float32: CHGNet's energy (eV/atom) and crystal feature of each structure.

    Runs CHGNet's energy task in batches of ``batch_size``, reporting progress and honouring ``cancel``
    between batches (about 25 structures/s on one CPU core for Materials Project cells).
    """
    cancel = cancel or CancelToken()
    model = chgnet_model(device)
    out = np.zeros((len(structures), 1 + CHGNET_FEATURES), dtype=np.float32)
    chunk = max(batch_size, 64)
    for start in range(0, len(structures), chunk):
        cancel.check()
        part = list(structures[start:start + chunk])
        with contextlib.redirect_stdout(sys.stderr):
            raw = model.predict_structure(part, task="e", return_crystal_feas=True, batch_size=batch_size)
        if isinstance(raw, dict):
            raw = [raw]
        for k, r in enumerate(raw):
            out[start + k, 0] = float(r["e"])
            out[start + k, 1:] = np.asarray(r["crystal_fea"], dtype=np.float32)
        progress(ProgressEvent(min(start + chunk, len(structures)), len(structures), "CHGNet features"))
    return out


def composition_fractions(structures: Sequence[Structure]) -> np.ndarray:
    """(n, N_ELEMENTS) float32 atom fractions of each structure over the element vocabulary."""
    out = np.zeros((len(structures), N_ELEMENTS), dtype=np.float32)
    for i, structure in enumerate(structures):
        composition = structure.composition.fractional_composition
        bad = unsupported_elements(el.symbol for el in composition)
        if bad:
            raise CrystalStudioError(f"{composition.reduced_formula}: element(s) {', '.join(bad)} "
                                     "not covered by the models (H to Pu)")
        for el, fraction in composition.items():
            out[i, element_index(el.symbol)] = fraction
    return out


def composition_statistics(fractions: np.ndarray) -> np.ndarray:
    """(n, 4 × P) fraction-weighted mean, standard deviation, minimum and maximum of the P elemental
    properties of :func:`~crystal_studio.ml.elements.element_feature_table` over each formula."""
    table = element_feature_table()  # (N_ELEMENTS, P), standardized
    mean = fractions @ table
    std = np.sqrt(np.clip(fractions @ table**2 - mean**2, 0.0, None))
    present = fractions[:, :, None] > 0
    lo = np.where(present, table[None], np.inf).min(axis=1)
    hi = np.where(present, table[None], -np.inf).max(axis=1)
    return np.concatenate([mean, std, lo, hi], axis=1).astype(np.float32)


@dataclass
class TransferConfig:
    """Architecture of :class:`TransferPredictor` (stored with the model)."""

    n_targets: int
    n_features: int  # width of the MLP input (CHGNet energy + crystal feature + composition statistics)
    hidden: int = 256
    layers: int = 3  # hidden layers of each member's MLP
    dropout: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> TransferConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def _mlp(config: TransferConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = config.n_features
    for _ in range(config.layers):
        layers += [nn.Linear(width, config.hidden), nn.SiLU()]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = config.hidden
    layers.append(nn.Linear(width, config.n_targets))
    return nn.Sequential(*layers)


class TransferPredictor(nn.Module):
    """Ensemble of MLP corrections over a linear baseline on frozen CHGNet descriptors.

    :meth:`forward` maps prepared inputs (see :func:`prepare_inputs`) to the ensemble mean and
    spread (B, T) in the targets' physical units; :meth:`predict_structures` does everything from
    pymatgen structures.
    """

    kind = "chgnet_transfer"

    def __init__(self, config: TransferConfig, targets: Sequence[str], members: int = 1):
        super().__init__()
        if config.n_targets != len(targets):
            raise ValueError(f"config has {config.n_targets} outputs for {len(targets)} targets")
        self.config = config
        self.targets = list(targets)
        self.members = nn.ModuleList(_mlp(config) for _ in range(members))
        # linear baseline on [fractions (N_ELEMENTS), CHGNet energy, 1], physical units
        self.register_buffer("baseline", torch.zeros(N_ELEMENTS + 2, len(targets)))
        self.register_buffer("feature_mean", torch.zeros(config.n_features))
        self.register_buffer("feature_std", torch.ones(config.n_features))
        self.register_buffer("residual_std", torch.ones(len(targets)))
        self.register_buffer("spread_scale", torch.ones(len(targets)))  # fitted on the validation split
        # targets that cannot be negative (band gaps, moduli, ...) are clipped at zero
        self.register_buffer("non_negative", torch.tensor([t in NON_NEGATIVE for t in self.targets]),
                             persistent=False)

    def baseline_inputs(self, fractions: Tensor, energy: Tensor) -> Tensor:
        """(B, N_ELEMENTS + 2) inputs of the linear baseline."""
        return torch.cat([fractions, energy.unsqueeze(-1), torch.ones_like(energy).unsqueeze(-1)], dim=-1)

    def standardized(self, features: Tensor) -> Tensor:
        """Features standardized with the training statistics and clipped to ±FEATURE_CLAMP."""
        return ((features - self.feature_mean) / self.feature_std).clamp(-FEATURE_CLAMP, FEATURE_CLAMP)

    def member_predictions(self, fractions: Tensor, features: Tensor) -> Tensor:
        """(K, B, T) predictions of every member in physical units from atom fractions (B, N_ELEMENTS)
        and raw features (B, n_features) whose first column is CHGNet's energy."""
        base = self.baseline_inputs(fractions, features[:, 0]) @ self.baseline
        x = self.standardized(features)
        corrections = torch.stack([member(x) for member in self.members]) * self.residual_std
        outputs = base + corrections
        return torch.where(self.non_negative, outputs.clamp(min=0.0), outputs)

    def forward(self, fractions: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        outputs = self.member_predictions(fractions, features)
        return outputs.mean(dim=0), outputs.std(dim=0, correction=0) * self.spread_scale

    @property
    def cutoff(self) -> float:
        """CHGNet's atom-graph cutoff in Å (for display; graphs are CHGNet's own)."""
        return 5.0

    @torch.no_grad()
    def predict_structures(self, structures: Sequence[Structure], batch_size: int = 32,
                           progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and spread, each (n, T) in physical units."""
        self.eval()
        if not structures:
            empty = np.zeros((0, len(self.targets)))
            return empty, empty.copy()
        fractions, features = prepare_inputs(structures, batch_size, progress=progress, cancel=cancel)
        device = self.baseline.device
        mean, std = self(torch.from_numpy(fractions).to(device), torch.from_numpy(features).to(device))
        return mean.double().cpu().numpy(), std.double().cpu().numpy()


def prepare_inputs(structures: Sequence[Structure], batch_size: int = 32, device: str = "cpu",
                   progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(atom fractions (n, N_ELEMENTS), features (n, 1 + 64 + 4 P)) of structures: CHGNet energy and
    crystal feature, then composition statistics. CrystalStudioError for uncovered elements."""
    fractions = composition_fractions(structures)  # checks the elements before CHGNet runs
    descriptors = chgnet_descriptors(structures, batch_size, device, progress, cancel)
    return fractions, np.concatenate([descriptors, composition_statistics(fractions)], axis=1)
