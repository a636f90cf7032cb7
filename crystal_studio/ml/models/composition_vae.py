"""Composition VAE on "modified one-hot" formula vectors (model kind ``composition_vae``; after El-Awady).

A formula is its vector of atom fractions over :data:`~crystal_studio.ml.elements.ELEMENTS` (sums
to 1). Encoder, decoder and classifier are MLPs of the shape Linear–ELU–Linear–ELU–Linear (hidden
100, latent 10 by default). A discrete class variable — the number of products a compound decomposes
into on its dataset's convex hull (1: on the hull) — is predicted from the vector by the classifier
head, conditions the encoder and the decoder, and is drawn from its training frequencies (or chosen)
when sampling. The decoder ends in a softmax, so every decode is again a fraction vector; the
reconstruction loss is the cross-entropy between input and decoded fractions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crystal_studio.core.formulas import DEFAULT_THRESHOLD, formula_text, integer_formula
from crystal_studio.ml.elements import ELEMENTS, N_ELEMENTS


@dataclass
class CompositionVAEConfig:
    """Architecture of a composition VAE (stored with the model)."""

    n_elements: int = N_ELEMENTS
    hidden: int = 100
    latent: int = 10
    n_classes: int = 1  # decomposition classes 1..n_classes (1 = unconditioned)
    threshold: float = DEFAULT_THRESHOLD  # decoding threshold T on fractions

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> CompositionVAEConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                         nn.Linear(hidden, n_out))


class CompositionVAE(nn.Module):
    """q(z | x, c), p(x | z, c) and the class head q(c | x) over fraction vectors x."""

    def __init__(self, config: CompositionVAEConfig):
        super().__init__()
        self.config = config
        k = config.n_classes
        self.encoder = _mlp(config.n_elements + k, config.hidden, 2 * config.latent)
        self.decoder = _mlp(config.latent + k, config.hidden, config.n_elements)
        self.classifier = _mlp(config.n_elements, config.hidden, k)
        # training frequencies of the classes, the prior used when sampling without a chosen class
        self.register_buffer("class_prior", torch.full((k,), 1.0 / k))

    def one_hot(self, classes: Tensor) -> Tensor:
        """(B,) class indices 0..n_classes-1 → (B, n_classes) one-hot."""
        return F.one_hot(classes.long(), self.config.n_classes).float()

    def class_logits(self, x: Tensor) -> Tensor:
        return self.classifier(x)

    def encode(self, x: Tensor, classes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Latent mean and log-variance of fraction vectors ``x`` (B, E); the class is the predicted
        one when not given."""
        if classes is None:
            classes = self.class_logits(x).argmax(dim=1)
        mu, logvar = self.encoder(torch.cat([x, self.one_hot(classes)], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode_logits(self, z: Tensor, classes: Tensor) -> Tensor:
        return self.decoder(torch.cat([z, self.one_hot(classes)], dim=1))

    def decode(self, z: Tensor, classes: Tensor) -> Tensor:
        """(B, E) decoded fractions (softmax: non-negative, sum 1)."""
        return self.decode_logits(z, classes).softmax(dim=1)

    def losses(self, x: Tensor, classes: Tensor, labelled: Tensor, generator: torch.Generator | None = None
               ) -> dict[str, Tensor]:
        """Per-batch mean of the reconstruction cross-entropy (nats), the KL to N(0, I) (nats) and the
        class cross-entropy over the ``labelled`` rows (the others are encoded with the predicted class)."""
        logits_c = self.class_logits(x)
        used = torch.where(labelled, classes, logits_c.argmax(dim=1))
        mu, logvar = self.encode(x, used)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + noise * (0.5 * logvar).exp()
        log_p = self.decode_logits(z, used).log_softmax(dim=1)
        reconstruction = -(x * log_p).sum(dim=1).mean()
        kl = (-0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=1)).mean()
        if labelled.any():
            classification = F.cross_entropy(logits_c[labelled], classes[labelled])
        else:
            classification = torch.zeros((), device=x.device)
        return {"reconstruction": reconstruction, "kl": kl, "classification": classification}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, classes: Tensor | None = None,
               center: Tensor | None = None, sigma: float = 1.0) -> tuple[Tensor, Tensor]:
        """``n`` decoded fraction vectors and their classes, z ~ N(center, σ² I) (center 0 by default),
        classes from :attr:`class_prior` unless given."""
        device = self.class_prior.device
        if classes is None:
            classes = torch.multinomial(self.class_prior, n, replacement=True, generator=generator)
        z = torch.randn((n, self.config.latent), generator=generator, device=device) * sigma
        if center is not None:
            z = z + center
        return self.decode(z, classes.to(device)), classes


def decode_formulas(fractions: Tensor | np.ndarray, threshold: float) -> list[str | None]:
    """Reduced formula strings of decoded fraction vectors (None where nothing reaches the threshold)."""
    rows = fractions.detach().cpu().numpy() if isinstance(fractions, Tensor) else np.asarray(fractions)
    out = []
    for row in rows:
        counts = integer_formula(row, ELEMENTS, threshold)
        out.append(formula_text(counts) if counts else None)
    return out
