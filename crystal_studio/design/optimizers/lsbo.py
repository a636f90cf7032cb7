"""Latent-space Bayesian optimization over a crystal VAE (Crystal-LSBO, Boyar et al.; ``shared/methods.md`` §3).

The search space is the crystal VAE's combined latent box [−bound, bound]^d. A *black box* scores the
crystals decoded from latents (higher is better; NaN where a decode fails): for a design run it is
the spec's objective loss under the predictor(s), negated, minus a penalty per broken constraint; the
benchmarks also use exact black boxes such as mean Pauling electronegativity.

:class:`LatentBO` is the loop: a BoTorch ``SingleTaskGP`` (ARD Matérn-5/2 or RBF; inputs normalized
from the box, outcomes standardized) on the observations, ``LogExpectedImprovement`` (q = 1) or
``qLogExpectedImprovement`` (q > 1) maximized by ``optimize_acqf`` in the box — by default only within
a cube of half-width ``trust_radius`` around the best latent so far (the paper searches the whole
box; with 100 seeds in 20 dimensions, EI there keeps querying far corners); failed decodes count
as the worst score seen minus ``failure_margin``; hyperparameters are refitted warm-started from the
previous fit. The GP is seeded with the encodings of the dataset's ``n_init`` best crystals under the
black box, scored on their own decodes (what the GP models is f(decode(z))).

**LCA-LSBO**: when an iteration beats the best score so far, the VAE is briefly retrained — its own
loss on dataset minibatches plus γ × the latent-consistency loss
(:meth:`~crystal_studio.ml.models.crystal_vae.CrystalVAE.consistency_loss`) at points drawn with
spread σ around the new best latent — and every observed crystal is re-encoded, so the GP's inputs
stay the codes of the crystals it has scored.

:class:`LatentSearch` wraps the loop as an :class:`~.base.Optimizer` for the optimization job;
:class:`RandomLatentSearch` is its baseline: uniform draws from the same box with the same budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from pymatgen.core import Structure

from crystal_studio.design.evaluation import evaluate_structure
from crystal_studio.design.optimizers.base import Optimizer, Proposal, StepReport
from crystal_studio.design.optimizers.objectives import ObjectiveLoss
from crystal_studio.design.optimizers.settings import LatentSearchConfig, LCAConfig, LSBOConfig
from crystal_studio.design.spec import DesignSpec, SpecError
from crystal_studio.ml.models.crystal_vae import CrystalArrays, CrystalVAE, skip_reason, structurally_valid

# A black box scores structures (None: a failed decode): scores (n,) with NaN for failures, and per
# structure what to report about it ({"properties": {...}, "property_std": {...}} or None).
BlackBox = Callable[[list[Structure | None]], tuple[np.ndarray, list[dict | None]]]


# ------------------------------------------------------------------------------------ black boxes


class SpecBlackBox:
    """A design spec under the predictor(s), as a black box over decoded crystals: score = −(objective
    loss, in units of each target's σ) − constraint_penalty × (broken non-property criteria); NaN for
    a failed or structurally invalid decode (atoms closer than 0.5 Å, volume under 0.1 Å³)."""

    def __init__(self, spec: DesignSpec, predictor, constraint_penalty: float):
        self.spec, self.predictor = spec, predictor
        self.objective = ObjectiveLoss(spec, predictor)
        self.penalty = constraint_penalty
        self.property_criteria = {o.criterion_name for o in spec.objectives}

    def __call__(self, structures: list[Structure | None]) -> tuple[np.ndarray, list[dict | None]]:
        from crystal_studio.ml.predictor import predict_structures

        scores = np.full(len(structures), np.nan)
        info: list[dict | None] = [None] * len(structures)
        usable = [k for k, s in enumerate(structures) if s is not None and structurally_valid(s)]
        if not usable:
            return scores, info
        mean, std = predict_structures(self.predictor, [structures[k] for k in usable])
        loss = self.objective.total(torch.as_tensor(mean), torch.as_tensor(std)).numpy()
        targets = list(self.predictor.targets)
        for j, k in enumerate(usable):
            properties = dict(zip(targets, mean[j].tolist(), strict=True))
            evaluation = evaluate_structure(structures[k], self.spec, properties)
            broken = sum(not ok for name, ok in evaluation.criteria.items() if name not in self.property_criteria)
            scores[k] = -float(loss[j]) - self.penalty * broken
            info[k] = {"properties": properties, "property_std": dict(zip(targets, std[j].tolist(), strict=True)),
                       "site_charges": evaluation.site_charges}
        return scores, info


def mean_electronegativity(structures: list[Structure | None]) -> tuple[np.ndarray, list[dict | None]]:
    """Exact black box of the Crystal-LSBO paper's surrogate task: the composition-weighted mean Pauling
    electronegativity (dimensionless; NaN for failed or structurally invalid decodes and elements
    without a Pauling value)."""
    scores = np.full(len(structures), np.nan)
    info: list[dict | None] = [None] * len(structures)
    for k, s in enumerate(structures):
        if s is not None and structurally_valid(s):
            value = s.composition.average_electroneg
            if math.isfinite(value):
                scores[k] = value
                info[k] = {"properties": {"mean_electronegativity": float(value)}}
    return scores, info


# ------------------------------------------------------------------------------------ the loop


@dataclass
class Observation:
    """One scored latent: the code, its decode (None when it failed) and the black box's verdict."""

    z: np.ndarray  # (d,)
    structure: Structure | None
    score: float  # NaN for a failure
    info: dict | None
    origin: str


class LatentBO:
    """The BO loop over a crystal VAE's latent box (see the module docstring); ``retrain`` (LCA) is
    called with the new best latent (1, d) whenever an iteration improves on the best score."""

    def __init__(self, vae: CrystalVAE, black_box: BlackBox, config: LatentSearchConfig,
                 retrain: Callable[[torch.Tensor], None] | None = None):
        self.vae, self.black_box, self.config, self.retrain = vae, black_box, config, retrain
        self.d = vae.config.latent
        self.bounds = torch.tensor([[-config.bound] * self.d, [config.bound] * self.d], dtype=torch.float64)
        self.observations: list[Observation] = []
        self.retrainings = 0
        self._hyper: dict | None = None  # the last fitted GP hyperparameters (warm start)
        self._fits = 0
        self.fit_failures = 0  # GP fits that failed and kept the previous hyperparameters

    # ------------------------------------------------------------ data

    def evaluate(self, z: torch.Tensor, origin: str) -> list[Observation]:
        """Decode latents (n, d), score the decodes and record them as observations."""
        z = z.to(self.vae.lattice_mean.device, torch.float32)
        structures, _ = self.vae.decode(z)
        scores, info = self.black_box(structures)
        new = [Observation(z[k].double().cpu().numpy(), structures[k], float(scores[k]), info[k], origin)
               for k in range(len(structures))]
        self.observations += new
        return new

    def best_score(self) -> float:
        scores = [o.score for o in self.observations if math.isfinite(o.score)]
        return max(scores) if scores else -math.inf

    def training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """GP inputs (n, d) and scores (n, 1), failures filled with the worst score minus the margin."""
        scores = np.array([o.score for o in self.observations])
        finite = np.isfinite(scores)
        if not finite.any():
            raise SpecError(["no decoded crystal could be scored: every decode failed"])
        filled = np.where(finite, scores, scores[finite].min() - self.config.failure_margin)
        x = torch.as_tensor(np.stack([o.z for o in self.observations]), dtype=torch.float64)
        return x.clamp(-self.config.bound, self.config.bound), torch.as_tensor(filled, dtype=torch.float64)[:, None]

    # ------------------------------------------------------------ the GP and the acquisition

    def _gp(self, x: torch.Tensor, y: torch.Tensor, refit: bool):
        """The GP on (x, y), hyperparameters warm-started from the last fit and refitted when ``refit``;
        a fit that fails (ill-conditioned data, e.g. repeated queries) keeps the previous
        hyperparameters (the defaults before any success) and is counted in :attr:`fit_failures`."""
        from botorch.exceptions.errors import ModelFittingError
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        gp = self._new_gp(x, y)
        if refit or self._hyper is None:
            try:
                fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
            except ModelFittingError:
                self.fit_failures += 1
                return self._new_gp(x, y).eval()
            self._hyper = {"covar": gp.covar_module.state_dict(), "likelihood": gp.likelihood.state_dict(),
                           "mean": gp.mean_module.state_dict()}
        return gp.eval()

    def _new_gp(self, x: torch.Tensor, y: torch.Tensor):
        """A SingleTaskGP on (x, y) with the last fitted hyperparameters (the defaults before any fit)."""
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Normalize, Standardize
        from gpytorch.kernels import MaternKernel, ScaleKernel

        covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=self.d)) if self.config.kernel == "matern" else None
        gp = SingleTaskGP(x, y, covar_module=covar, input_transform=Normalize(self.d, bounds=self.bounds),
                          outcome_transform=Standardize(1))
        if self._hyper is not None:
            for name, module in (("covar", gp.covar_module), ("likelihood", gp.likelihood), ("mean", gp.mean_module)):
                module.load_state_dict(self._hyper[name])
        return gp

    def propose(self) -> tuple[torch.Tensor, float]:
        """The next ``batch`` latents (q, d) and the log acquisition value there."""
        from botorch.acquisition import LogExpectedImprovement, qLogExpectedImprovement
        from botorch.optim import optimize_acqf

        x, y = self.training_data()
        gp = self._gp(x, y, refit=self._fits % self.config.refit_every == 0)
        self._fits += 1
        best = float(y.max())  # the posterior is in the scores' own units (the outcome transform is undone)
        if self.config.batch == 1:
            acquisition = LogExpectedImprovement(gp, best_f=best)
        else:
            acquisition = qLogExpectedImprovement(gp, best_f=best)
        candidates, value = optimize_acqf(acquisition, bounds=self.search_bounds(x, y), q=self.config.batch,
                                          num_restarts=self.config.restarts, raw_samples=self.config.raw_samples)
        return candidates.detach(), float(value)

    def search_bounds(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(2, d) box the acquisition is maximized in: the whole box, or with ``trust_radius`` its
        intersection with a cube of that half-width around the best observed latent."""
        radius = self.config.trust_radius
        if not radius:
            return self.bounds
        best = x[int(y.argmax())]
        return torch.stack([torch.maximum(best - radius, self.bounds[0]), torch.minimum(best + radius, self.bounds[1])])

    def iterate(self, step: int) -> dict[str, float]:
        """One BO iteration: propose, evaluate, LCA retraining on improvement; returns its metrics."""
        before = self.best_score()
        z, log_acquisition = self.propose()
        new = self.evaluate(z, f"BO iteration {step}")
        improved = max((o.score for o in new if math.isfinite(o.score)), default=-math.inf) > before
        if improved and self.retrain is not None:
            best = max((o for o in new if math.isfinite(o.score)), key=lambda o: o.score)
            self.retrain(torch.as_tensor(best.z[None], dtype=torch.float32))
            self.retrainings += 1
            self.reencode()
        return {"bo/log_acquisition": log_acquisition, "bo/fit_failures": float(self.fit_failures),
                **self.query_metrics(new)}

    def query_metrics(self, new: list[Observation]) -> dict[str, float]:
        """Best-so-far and this batch's mean as losses (negated scores), the share of valid queries."""
        scores = [o.score for o in new if math.isfinite(o.score)]
        metrics = {"loss/best": -self.best_score(), "rate/valid_queries": self.valid_share()}
        if scores:
            metrics["loss/mean"] = -float(np.mean(scores))
        if self.retrain is not None:
            metrics["lca/retrainings"] = float(self.retrainings)
        return metrics

    def valid_share(self) -> float:
        """Share of the BO's own queries (not the dataset seeds) that the black box could score."""
        queries = [o for o in self.observations if not o.origin.startswith("dataset")]
        return float(np.mean([math.isfinite(o.score) for o in queries])) if queries else 1.0

    def reencode(self) -> None:
        """Replace the code of every successfully decoded observation by its encoding under the
        (retrained) VAE."""
        decoded = [o for o in self.observations if o.structure is not None
                   and skip_reason(o.structure, self.vae.config.max_sites) is None]
        for start in range(0, len(decoded), 256):
            chunk = decoded[start:start + 256]
            codes = self.vae.encode_structures([o.structure for o in chunk]).double().cpu().numpy()
            for o, z in zip(chunk, codes, strict=True):
                o.z = z


# ------------------------------------------------------------------------------------ LCA retraining


class LatentConsistencyRetrainer:
    """Briefly retrains a crystal VAE around a latent (LCA-LSBO): its own weighted loss on dataset
    minibatches plus γ × latent-consistency loss at ``lca_points`` latents drawn around it."""

    def __init__(self, vae: CrystalVAE, arrays: CrystalArrays, weights: dict[str, float], config: LCAConfig, seed: int):
        self.vae, self.config, self.weights = vae, config, weights
        self.lattice, self.coords, self.species = vae.tensors(arrays)
        self.generator = torch.Generator(device=vae.lattice_mean.device).manual_seed(seed)
        self.optimizer = torch.optim.RMSprop(vae.parameters(), lr=config.lca_lr)

    def __call__(self, center: torch.Tensor) -> None:
        device = self.vae.lattice_mean.device
        center = center.to(device)
        self.vae.train()
        with torch.enable_grad():
            for _ in range(self.config.lca_steps):
                rows = torch.randint(len(self.lattice), (min(256, len(self.lattice)),), generator=self.generator,
                                     device=device)
                terms = self.vae.losses(self.lattice[rows], self.coords[rows], self.species[rows],
                                        generator=self.generator)
                loss = sum(self.weights[key.rsplit("_", 1)[1]] * value for key, value in terms.items())
                noise = torch.randn((self.config.lca_points, center.shape[1]), generator=self.generator, device=device)
                loss = loss + self.config.lca_gamma * self.vae.consistency_loss(center + self.config.lca_sigma * noise)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        self.vae.eval()


# ------------------------------------------------------------------------------------ optimizers


class LatentSearch(Optimizer):
    """LSBO (or LCA-LSBO with an :class:`LCAConfig`) as a design method: ``n_steps`` BO iterations of
    ``batch`` queries each after the dataset seeds; the final candidates are the best distinct scored
    decodes."""

    name = "lsbo"

    def __init__(self, spec: DesignSpec | None, black_box: BlackBox, vae: CrystalVAE, seeds: list[Structure],
                 n_candidates: int, n_steps: int, seed: int = 0, config: LatentSearchConfig | None = None,
                 retrain: Callable[[torch.Tensor], None] | None = None, targets: list[str] | None = None):
        super().__init__(spec, n_candidates, n_steps, seed)
        self.config = config or LSBOConfig()
        self.config.validate()
        self.vae, self.black_box, self.seeds, self.targets = vae, black_box, seeds, targets or []
        self.loop = LatentBO(vae, black_box, self.config, retrain)
        if isinstance(self.config, LCAConfig):
            self.name = "lca-lsbo"

    def initialize(self) -> None:
        """Score the dataset pool, encode the ``n_init`` best and score their decodes (the GP's seeds)."""
        scores, _ = self.black_box(list(self.seeds))
        order = [k for k in np.argsort(-np.nan_to_num(scores, nan=-np.inf)) if math.isfinite(scores[k])]
        best = [self.seeds[k] for k in order[:self.config.n_init]]
        if not best:
            raise SpecError(["none of the dataset's crystals could be scored by the black box"])
        self.dataset_best = float(scores[order[0]])
        torch.manual_seed(self.seed)
        self.loop.evaluate(self.vae.encode_structures(best), "dataset seed (decoded)")

    def steps(self) -> Iterator[StepReport]:
        self.initialize()
        for step in range(1, self.n_steps + 1):
            before = len(self.loop.observations)
            metrics = self.step(step)
            queries = [o.z.tolist() for o in self.loop.observations[before:]]
            yield StepReport(step, self.n_steps, metrics, self._proposal_values(), queries)

    def step(self, step: int) -> dict[str, float]:
        return {**self.loop.iterate(step), "loss/dataset_best": -self.dataset_best}

    def best_observations(self, n: int) -> list[Observation]:
        """The ``n`` best scored decodes, best first, without StructureMatcher duplicates (neighbouring
        latents often decode to the same crystal)."""
        from pymatgen.analysis.structure_matcher import StructureMatcher

        matcher = StructureMatcher()
        scored = sorted((o for o in self.loop.observations if math.isfinite(o.score)), key=lambda o: -o.score)
        kept: dict[str, list[Structure]] = {}
        out = []
        for o in scored:
            same_formula = kept.setdefault(o.structure.composition.reduced_formula, [])
            if not any(matcher.fit(o.structure, other) for other in same_formula):
                same_formula.append(o.structure)
                out.append(o)
            if len(out) == n:
                break
        return out

    def candidates(self) -> list[Proposal]:
        return [Proposal(o.structure, o.info["properties"], o.info.get("property_std", {}), o.origin,
                         o.info.get("site_charges")) for o in self.best_observations(self.n_candidates)]

    def _proposal_values(self) -> dict[str, list[float]]:
        """Predicted values of the best ``n_candidates`` observations (duplicates included: this feeds
        the live scatter every step, where matching structures would cost more than the step)."""
        best = sorted((o for o in self.loop.observations if math.isfinite(o.score)),
                      key=lambda o: -o.score)[:self.n_candidates]
        return {t: [o.info["properties"][t] for o in best if t in o.info["properties"]] for t in self.targets}

    def parameters(self) -> dict:
        return {**super().parameters(), "config": asdict(self.config), "n_seed_pool": len(self.seeds),
                "latent_dimensions": self.loop.d}


class RandomLatentSearch(LatentSearch):
    """Baseline: each iteration draws ``batch`` latents uniformly from the same box (same budget as LSBO)."""

    name = "latent-random"

    def step(self, step: int) -> dict[str, float]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + step)
        z = (torch.rand((self.config.batch, self.loop.d), generator=generator) * 2 - 1) * self.config.bound
        new = self.loop.evaluate(z, f"random latent draw {step}")
        return {**self.loop.query_metrics(new), "loss/dataset_best": -self.dataset_best}
