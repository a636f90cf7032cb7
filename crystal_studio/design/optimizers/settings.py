"""The settings of the optimizers, as plain dataclasses (no torch): the CLI's ``methods`` and ``--set``
and the Optimization panel's forms read them without importing the optimizers themselves, so that
neither ``crystal-studio --help`` nor the first window waits for torch (issue 15: importing torch took
1.4 s of the window's construction)."""

from __future__ import annotations

from dataclasses import dataclass

from crystal_studio.core.options import OptionsError, option, range_problems

PATTERN_CHOICES = ("all", "paper")
TARGET_MARGIN = 0.2  # fraction of the tolerance the hinge aims inside the window
BOUND_MARGIN = 0.05  # fraction of σ the hinge aims past a bound
TOLERANCE_BAND = 0.05  # half-width of the zero-loss band around the tolerance-factor window's centre
GEOMETRIES = ("a0", "free")
KERNELS = ("matern", "rbf")


class OptimizerSettings:
    """What every settings dataclass below does with its declared ranges and choices."""

    def problems(self) -> list[str]:
        """Every value outside its declared range or choices."""
        return range_problems(self)

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise OptionsError(problems)


@dataclass
class PerovskiteSearchConfig(OptimizerSettings):
    """Settings every perovskite search shares: the chemical space and how a crystal is scored."""

    patterns: str = option("all", "oxidation patterns: 'all' neutral (qA, qB, qX), or 'paper' (A+B2+X−, A2+B4+X2−)",
                           choices=PATTERN_CHOICES)
    caution: float | None = option(None, "k in mean ± k·std against the optimizer; none: 1 for ensembles, 0 for one "
                                         "model", minimum=0.0)
    tolerance_weight: float = option(5.0, "weight of the tolerance-factor term", minimum=0.0)
    tolerance_band: float = option(TOLERANCE_BAND, "zero-loss half-width around the tolerance window's centre",
                                   minimum=0.0)
    target_margin: float = option(TARGET_MARGIN, "target hinges aim inside this fraction of the tolerance",
                                  minimum=0.0)
    bound_margin: float = option(BOUND_MARGIN, "below/above hinges aim this many σ past the bound")
    linear_bounds: bool = option(False, "below/above objectives as linear terms (paper) instead of hinges")


@dataclass
class SmoacsConfig(PerovskiteSearchConfig):
    """SMOACS settings (``crystal-studio optimize --set NAME=VALUE``); lengths Å, coordinates fractional."""

    lr_lattice: float = option(0.02, "Adam step of the lattice parameters (tanh strain in 'a0', Å in 'free')",
                               minimum=0.0)
    lr_atoms: float = option(0.2, "Adam step of the site and pattern logits", minimum=0.0)
    lr_coords: float = option(0.005, "Adam step of the coordinate offsets", unit="fractional", minimum=0.0)
    temperature_start: float = option(1.0, "softmax temperature, annealed linearly", minimum=0.0)
    temperature_end: float = option(0.01, "final softmax temperature", minimum=0.0)
    geometry: str = option("a0", "'a0': lattice follows the soft radii within ±lattice_slack; 'free': lengths "
                                 "optimized", choices=GEOMETRIES)
    lattice_slack: float = option(0.03, "largest relative strain of each axis away from a0 (geometry 'a0')",
                                  minimum=0.0, maximum=0.99)
    max_offset: float = option(0.0, "largest coordinate offset from the ideal sites (0 freezes coordinates)",
                               unit="fractional", minimum=0.0)
    mutate_at: tuple[float, ...] = option((0.2, 0.4, 0.6, 0.8), "fractions of the run at which to copy and mutate "
                                          "(paper: 0.25, 0.5, 0.75)")
    keep_fraction: float = option(0.2, "share of the batch kept (besides successful crystals) when mutating",
                                  minimum=1e-9, maximum=1.0)
    keep_successful: bool = option(True, "keep crystals meeting every criterion when mutating (they are archived "
                                         "anyway)")
    restart_schedules: bool = option(True, "restart the temperature and learning-rate schedules after each mutation")
    archive_every: int = option(5, "steps between archiving the hard crystals", minimum=1)
    init_scale: float = option(0.5, "standard deviation of the initial logits", minimum=0.0)
    seed_run: int | None = option(None, "sampling run (e.g. of a composition VAE) whose valid ABX3 formulas seed the "
                                        "initial site logits, one formula per crystal in turn; none: random logits")
    seed_strength: float = option(3.0, "logit added to a seeded crystal's formula element on each site", minimum=0.0)
    min_length: float = option(2.0, "shortest lattice length per 5-atom cell (geometry 'free')", unit="Å",
                               minimum=1e-9)
    max_length: float = option(10.0, "longest lattice length per 5-atom cell (geometry 'free')", unit="Å")

    def validate(self) -> None:
        problems = self.problems()
        if any(not 0 < f < 1 for f in self.mutate_at):
            problems.append("mutate_at fractions must lie strictly between 0 and 1")
        if not 0 < self.temperature_end <= self.temperature_start:
            problems.append("need 0 < temperature_end <= temperature_start")
        if not 0 < self.min_length < self.max_length:
            problems.append("need 0 < min_length < max_length")
        if problems:
            raise OptionsError(problems, "smoacs settings")


@dataclass
class LatentSearchConfig(OptimizerSettings):
    """Settings every latent-space search shares (the random baseline has only these)."""

    n_init: int = option(100, "dataset crystals whose encodings seed the search: the best under the black box "
                              "(paper: 100)", minimum=1)
    init_pool: int = option(4096, "dataset crystals scored to pick the seeds (random subset; 0: all)", minimum=0)
    batch: int = option(1, "queries per iteration (for LSBO, q > 1 uses qLogEI)", minimum=1, maximum=64)
    bound: float = option(3.0, "the search box is [−bound, bound] in every latent dimension", minimum=1e-3)
    constraint_penalty: float = option(1.0, "score lost per spec constraint a decode breaks (neutrality, template, "
                                            "tolerance factor, elements, distances)", minimum=0.0)


@dataclass
class LSBOConfig(LatentSearchConfig):
    """LSBO settings (``crystal-studio optimize --method lsbo --set NAME=VALUE``)."""

    kernel: str = option("matern", "GP kernel with one length scale per latent dimension: Matérn-5/2 or RBF",
                         choices=KERNELS)
    failure_margin: float = option(1.0, "a failed decode (no structure, atoms closer than 0.5 Å) scores the worst "
                                        "score seen minus this", minimum=0.0)
    refit_every: int = option(1, "iterations between GP hyperparameter fits (between fits the GP is conditioned "
                                 "on the new data only)", minimum=1)
    trust_radius: float = option(0.5, "half-width of the cube around the best latent in which the acquisition is "
                                      "maximized (0: the whole box, as in the paper; in 20 dimensions that spends "
                                      "the budget on far corners, see docs/benchmarks.md)", minimum=0.0)
    restarts: int = option(8, "restarts of the acquisition optimizer", minimum=1)
    raw_samples: int = option(256, "random box points the acquisition optimizer starts from", minimum=1)


@dataclass
class LCAConfig(LSBOConfig):
    """LCA-LSBO settings: LSBO's plus the latent-consistency retraining."""

    lca_sigma: float = option(0.3, "spread of the augmented latents around a new best (paper: 0.3)", minimum=1e-6)
    lca_gamma: float = option(2.5, "weight γ of the latent-consistency loss (paper: 2.5)", minimum=0.0)
    lca_steps: int = option(20, "RMSprop steps per retraining", minimum=1)
    lca_points: int = option(64, "augmented latents per retraining step", minimum=1)
    lca_lr: float = option(1e-4, "RMSprop step of the retraining", minimum=0.0)
