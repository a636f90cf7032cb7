"""Training the composition-conditioned crystal VAE and its energy surrogates
(:mod:`crystal_studio.ml.models.csp_vae`, LCOMs) as one stored run.

Two stages:

1. **VAE**: the dataset's crystals with at most ``max_sites`` sites (others skipped and counted by
   reason), split seeded into train and validation; loss = lattice + coordinate reconstruction
   + β · KL, Adam, early stopping on the validation loss.
2. **Surrogates**: the frozen encoder's posterior samples of the crystals that have an ``energy``
   value (eV/atom, typically CHGNet's from the ``polymorphs`` job) train two energy surrogates on the
   same batches: ``conservative`` (MSE − α · gap on latents mined by ``mining_steps`` gradient steps,
   the COMs regularizer) and ``mse`` (α = 0, the ablation).

After every epoch the metrics go to the store and the resumable state (model, optimizers, RNG
states, stage and counters) to the run's state file, so an interrupted run resumes where it stopped.
The stored model's metrics: validation reconstruction from latent means (lattice MAE in Å and
degrees, coordinate RMSE in Å), the structural validity of decodes from N(0, I) with the validation
crystals' compositions (every decode has exactly its composition by construction), and per
surrogate the validation MAE (eV/atom) and mean mined gap (standardized energy).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.options import option, range_problems
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.ml.crystal_vae_training import load_crystals
from crystal_studio.ml.models.crystal_vae import EMPTY, lattice_matrices, structurally_valid
from crystal_studio.ml.models.csp_vae import (
    SURROGATES,
    CspVAE,
    CspVAEConfig,
    composition_vector,
    mine_adversarial_latents,
    surrogate_loss,
)
from crystal_studio.ml.predictor import reopened_run, saved_bytes, state_bytes
from crystal_studio.ml.runtime import describe_device, package_versions, resolve_device, set_threads
from crystal_studio.store import models as store
from crystal_studio.store.project import Project

KIND = "csp_vae"
STATE_VERSION = 1


@dataclass
class CspVAETrainConfig:
    """Everything that determines a csp_vae training run (stored with it)."""

    kind: str = option(KIND, "model kind", choices=(KIND,))
    energy: str = option("energy_per_atom", "property the surrogates learn (eV/atom)")
    epochs: int = option(300, "maximum VAE epochs", minimum=1)
    patience: int = option(40, "VAE early stopping: epochs without a better validation loss", minimum=1)
    surrogate_epochs: int = option(0, "surrogate epochs, both surrogates on the same batches (0: as many as "
                                      "--epochs)", minimum=0)
    seed: int = option(0, "seed of the split, initialization, noise and batch order")
    batch_size: int = option(128, "crystals per batch", minimum=1)
    lr: float = option(1e-3, "VAE learning rate (Adam)", minimum=0.0)
    surrogate_lr: float = option(3e-4, "surrogate learning rate (Adam)", minimum=0.0)
    max_sites: int = option(12, "most sites per crystal (bigger cells are skipped)", minimum=1, maximum=200)
    latent: int = option(32, "latent dimensions", minimum=1)
    hidden: int = option(256, "width of the VAE's MLPs and of the composition features", minimum=2)
    channels: int = option(64, "channels of the 1-D convolutions over the site list", minimum=1)
    surrogate_hidden: int = option(2048, "width of the surrogates' two hidden layers (paper: 2048)", minimum=1)
    beta: float = option(0.1, "weight β of the KL term", minimum=0.0)
    alpha: float = option(1.0, "weight α of the conservative term (the mse surrogate always has 0)", minimum=0.0)
    mining_steps: int = option(1, "gradient steps that mine z⁺ for the conservative term (paper: 1)", minimum=1)
    mining_step_size: float = option(0.5, "step of the mining steps, latent units per standardized-energy gradient",
                                     minimum=0.0)
    gap_limit: float = option(1.0, "the conservative term stops pulling beyond this gap (standardized energy)",
                              minimum=0.0)
    val_share: float = option(0.1, "share of crystals held out for validation", minimum=0.01, maximum=0.5)
    prior_samples: int = option(128, "decodes from N(0, I) whose structural validity is measured", minimum=1)
    device: str = option("auto", "auto (GPU when available), cpu or cuda")
    threads: int = option(0, "CPU threads for torch (0: torch's default)", minimum=0)

    def validate(self) -> None:
        problems = range_problems(self)
        if problems:
            raise CrystalStudioError("csp_vae: " + "; ".join(problems))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> CspVAETrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


CONFIG = CspVAETrainConfig


def _model_config(config: CspVAETrainConfig) -> CspVAEConfig:
    return CspVAEConfig(max_sites=config.max_sites, latent=config.latent, hidden=config.hidden,
                        channels=config.channels, surrogate_hidden=config.surrogate_hidden)


def _split(n: int, val_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 4:
        raise CrystalStudioError(f"need at least 4 usable structures to train a csp_vae, found {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(val_share * n))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _data(project: Project, dataset: str, config: CspVAETrainConfig, progress, cancel):
    data = load_crystals(project, dataset, [config.energy], config.max_sites, progress, cancel)
    return data, _split(len(data.ids), config.val_share, config.seed)


def train_csp_vae(project: Project, dataset: str, config: CspVAETrainConfig, name: str | None = None,
                  progress: ProgressCallback = no_progress, cancel: CancelToken | None = None):
    """Train a csp_vae on ``dataset`` and store it; see the module docstring."""
    cancel = cancel or CancelToken()
    config.validate()
    device = resolve_device(config.device)
    set_threads(config.threads)
    data, split = _data(project, dataset, config, progress, cancel)
    parameters = {"dataset": dataset, "dataset_id": project.dataset_id(dataset), "kind": KIND,
                  "config": config.as_dict(), "name": name or f"csp VAE + energy surrogates on {dataset}",
                  "n_structures": len(data.ids), "skipped": dict(data.skipped)}
    run_id = store.create_run(project, "train", parameters, config.seed, describe_device(device), package_versions())
    return _execute(project, run_id, parameters, config, data, split, None, device, progress, cancel)


def resume_csp_vae(project: Project, run_id: int, config: CspVAETrainConfig,
                   progress: ProgressCallback = no_progress, cancel: CancelToken | None = None):
    """Continue an interrupted csp_vae run from its last completed epoch."""
    cancel = cancel or CancelToken()
    run, device, state = reopened_run(project, run_id, config)
    data, split = _data(project, run.parameters["dataset"], config, progress, cancel)
    store.update_run(project, run_id, status="running", message="", device=describe_device(device))
    return _execute(project, run_id, run.parameters, config, data, split, state, device, progress, cancel)


class _Trainer:
    """The state of one run: model, optimizers, generators, stage and counters (all resumable)."""

    def __init__(self, config: CspVAETrainConfig, device: torch.device):
        torch.manual_seed(config.seed)
        self.config = config
        self.model = CspVAE(_model_config(config)).to(device)
        vae_parameters = [p for n, p in self.model.named_parameters() if not n.startswith("surrogates.")]
        self.vae_optimizer = torch.optim.Adam(vae_parameters, lr=config.lr)
        self.surrogate_optimizers = {name: torch.optim.Adam(self.model.surrogates[name].parameters(),
                                                            lr=config.surrogate_lr) for name in SURROGATES}
        self.noise = torch.Generator(device=device).manual_seed(config.seed + 1)
        self.order = torch.Generator().manual_seed(config.seed + 2)
        self.stage, self.epoch, self.best, self.best_val, self.best_epoch, self.bad = "vae", 0, None, math.inf, -1, 0

    def state(self) -> dict:
        return {"version": STATE_VERSION, "model": self.model.state_dict(), "vae_optimizer": self.vae_optimizer.state_dict(),
                "surrogate_optimizers": {k: o.state_dict() for k, o in self.surrogate_optimizers.items()},
                "noise": self.noise.get_state(), "order": self.order.get_state(), "stage": self.stage,
                "epoch": self.epoch, "best": self.best, "best_val": self.best_val, "best_epoch": self.best_epoch,
                "bad": self.bad}

    def restore(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise CrystalStudioError("the saved training state is from another version; start a new run")
        self.model.load_state_dict(state["model"])
        self.vae_optimizer.load_state_dict(state["vae_optimizer"])
        for name, optimizer in self.surrogate_optimizers.items():
            optimizer.load_state_dict(state["surrogate_optimizers"][name])
        self.noise.set_state(state["noise"])
        self.order.set_state(state["order"])
        self.stage, self.epoch, self.best, self.best_val, self.best_epoch, self.bad = (
            state["stage"], state["epoch"], state["best"], state["best_val"], state["best_epoch"], state["bad"])

    def vae_loss(self, terms: dict) -> torch.Tensor:
        return terms["lattice_recon"] + terms["coord_recon"] + self.config.beta * terms["kl"]


def _execute(project: Project, run_id: int, parameters: dict, config: CspVAETrainConfig, data,
             split: tuple[np.ndarray, np.ndarray], state: dict | None, device: torch.device,
             progress: ProgressCallback, cancel: CancelToken):
    from crystal_studio.ml.training import TrainResult

    trainer = _Trainer(config, device)
    model = trainer.model
    lattice, coords, species = model.tensors(data.arrays)
    energy = torch.as_tensor(data.targets[:, 0], dtype=torch.float32, device=device)
    train_rows, val_rows = (torch.as_tensor(r, device=device) for r in split)
    known = torch.isfinite(energy)
    surrogate_train = train_rows[known[train_rows]]
    if len(surrogate_train) < 2:
        raise CrystalStudioError(f"fewer than 2 training crystals of '{parameters['dataset']}' have "
                                 f"{config.energy}; the surrogates need energies")
    _fit_scales(model, lattice[train_rows], energy[surrogate_train])
    surrogate_epochs = config.surrogate_epochs or config.epochs
    total_epochs = config.epochs + surrogate_epochs

    def cancelled() -> str:
        return f"cancelled in {trainer.stage} epoch {trainer.epoch}; resume with: crystal-studio train PROJECT --resume {run_id}"

    store.announce_run(run_id, progress)
    with store.guarded_run(project, run_id, cancelled):
        if state is not None:
            trainer.restore(state)
        step = trainer.epoch + (config.epochs if trainer.stage == "surrogate" else 0)
        store.delete_metrics_after(project, run_id, step - 1)
        while trainer.stage == "vae" and trainer.epoch < config.epochs and trainer.bad < config.patience:
            cancel.check()
            metrics = _vae_epoch(trainer, lattice, coords, species, train_rows)
            metrics.update(_vae_validation(trainer, lattice[val_rows], coords[val_rows], species[val_rows]))
            if not math.isfinite(metrics["val_loss"]):
                raise CrystalStudioError(f"csp_vae training diverged at epoch {trainer.epoch + 1} (non-finite "
                                         "loss); try a smaller --set lr=...")
            if metrics["val_loss"] < trainer.best_val:
                trainer.best = {k: v.detach().clone() for k, v in model.state_dict().items()}
                trainer.best_val, trainer.best_epoch, trainer.bad = metrics["val_loss"], trainer.epoch, 0
            else:
                trainer.bad += 1
            store.record_metrics(project, run_id, trainer.epoch, metrics)
            trainer.epoch += 1
            store.save_run_state(project, run_id, saved_bytes(trainer.state()))
            progress(ProgressEvent(trainer.epoch, total_epochs, f"VAE epoch {trainer.epoch}: val loss "
                                   f"{metrics['val_loss']:.4g}, prior validity {metrics['val_prior_validity']:.0%}",
                                   metrics))
        if trainer.stage == "vae":
            vae_epochs = trainer.epoch
            model.load_state_dict(trainer.best)
            trainer.stage, trainer.epoch = "surrogate", 0
            store.save_run_state(project, run_id, saved_bytes({**trainer.state(), "vae_epochs": vae_epochs}))
        else:
            vae_epochs = state.get("vae_epochs", config.epochs)
        while trainer.epoch < surrogate_epochs:
            cancel.check()
            metrics = _surrogate_epoch(trainer, lattice, coords, species, energy, surrogate_train)
            metrics.update(_surrogate_validation(trainer, lattice, coords, species, energy, val_rows[known[val_rows]]))
            store.record_metrics(project, run_id, vae_epochs + trainer.epoch, metrics)
            trainer.epoch += 1
            store.save_run_state(project, run_id, saved_bytes({**trainer.state(), "vae_epochs": vae_epochs}))
            mae = metrics.get("val_conservative_mae", math.nan)
            progress(ProgressEvent(config.epochs + trainer.epoch, total_epochs,
                                   f"surrogate epoch {trainer.epoch}: val MAE {mae:.3g} eV/atom (conservative), "
                                   f"{metrics.get('val_mse_mae', math.nan):.3g} (mse)", metrics))
        model.eval()
        final = _vae_validation(trainer, lattice[val_rows], coords[val_rows], species[val_rows])
        final.update(_surrogate_validation(trainer, lattice, coords, species, energy, val_rows[known[val_rows]]))
        final["n_train"], final["n_val"], final["n_energy"] = (float(len(train_rows)), float(len(val_rows)),
                                                               float(known.sum()))
        message = (f"trained on {len(train_rows)} crystals (val {len(val_rows)}), VAE best epoch "
                   f"{trainer.best_epoch + 1} of {vae_epochs}; val lattice MAE {final['val_length_mae']:.3g} Å, "
                   f"coordinate RMSE {final['val_coord_rmse_angstrom']:.3g} Å, prior validity "
                   f"{final['val_prior_validity']:.0%}; surrogate val MAE "
                   f"{final.get('val_conservative_mae', math.nan):.3g} (conservative) / "
                   f"{final.get('val_mse_mae', math.nan):.3g} eV/atom (mse)")
        training = {**config.as_dict(), "dataset": parameters["dataset"], "vae_epochs_run": vae_epochs,
                    "best_epoch": trainer.best_epoch + 1, "skipped": parameters.get("skipped", {})}
        model_id = save_csp_vae(project, model, parameters["name"], {"csp": final}, training,
                                parameters["dataset_id"], run_id, complete_run=message)
        store.clear_run_state(project, run_id)
    return TrainResult(model_id, run_id, KIND, {"csp": final}, {"csp": final}, message)


def _fit_scales(model: CspVAE, lattice: torch.Tensor, energy: torch.Tensor) -> None:
    model.lattice_mean.copy_(lattice.mean(dim=0))
    model.lattice_std.copy_(lattice.std(dim=0, unbiased=False).clamp(min=1e-3))
    for surrogate in model.surrogates.values():
        surrogate.energy_mean.copy_(energy.mean())
        surrogate.energy_std.copy_(energy.std(unbiased=False).clamp(min=1e-4))


def _batches(trainer: _Trainer, rows: torch.Tensor):
    picks = torch.randperm(len(rows), generator=trainer.order).to(rows.device)
    for start in range(0, len(rows), trainer.config.batch_size):
        yield rows[picks[start:start + trainer.config.batch_size]]


def _vae_epoch(trainer: _Trainer, lattice, coords, species, rows) -> dict[str, float]:
    trainer.model.train()
    totals: Counter = Counter()
    for batch in _batches(trainer, rows):
        terms = trainer.model.vae_losses(lattice[batch], coords[batch], species[batch], trainer.noise)
        loss = trainer.vae_loss(terms)
        trainer.vae_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.vae_optimizer.step()
        for key, value in {**terms, "loss": loss}.items():
            totals[key] += float(value.detach()) * len(batch)
    return {f"train_{k}": v / len(rows) for k, v in totals.items()}


@torch.no_grad()
def _vae_validation(trainer: _Trainer, lattice, coords, species) -> dict[str, float]:
    model = trainer.model
    model.eval()
    terms = model.vae_losses(lattice, coords, species, trainer.noise)
    metrics = {f"val_{k}": float(v) for k, v in terms.items()}
    metrics["val_loss"] = float(trainer.vae_loss(terms))
    metrics.update(reconstruction_metrics(model, lattice, coords, species))
    metrics["val_prior_validity"] = prior_validity(model, species, trainer.config.prior_samples,
                                                   trainer.config.seed + 3)
    return metrics


def _surrogate_epoch(trainer: _Trainer, lattice, coords, species, energy, rows) -> dict[str, float]:
    model, config = trainer.model, trainer.config
    model.eval()  # the VAE is frozen; only the surrogates learn
    totals: Counter = Counter()
    for batch in _batches(trainer, rows):
        with torch.no_grad():
            mu, logvar = model.encode_distribution(lattice[batch], coords[batch], species[batch])
            z = mu + torch.randn(mu.shape, generator=trainer.noise, device=mu.device) * (0.5 * logvar).exp()
            composition = composition_vector(species[batch])
        for name in SURROGATES:
            surrogate = model.surrogates[name]
            surrogate.train()
            target = (energy[batch] - surrogate.energy_mean) / surrogate.energy_std
            alpha = config.alpha if name == "conservative" else 0.0
            terms = surrogate_loss(surrogate, z, composition, target, alpha, config.mining_steps,
                                   config.mining_step_size, config.gap_limit)
            optimizer = trainer.surrogate_optimizers[name]
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            for key, value in terms.items():
                totals[f"{name}_{key}"] += float(value.detach()) * len(batch)
    return {f"train_{k}": v / len(rows) for k, v in totals.items()}


def _surrogate_validation(trainer: _Trainer, lattice, coords, species, energy, rows) -> dict[str, float]:
    """Per surrogate: validation MAE (eV/atom) on latent means and the mean gap E(z⁺) − E(z)
    (standardized) on latents mined from them."""
    model, config = trainer.model, trainer.config
    if not len(rows):
        return {}
    model.eval()
    z = model.encode(lattice[rows], coords[rows], species[rows])
    composition = composition_vector(species[rows])
    metrics = {}
    for name in SURROGATES:
        surrogate = model.surrogates[name]
        surrogate.eval()
        with torch.no_grad():
            metrics[f"val_{name}_mae"] = float((surrogate(z, composition) - energy[rows]).abs().mean())
        z_plus = mine_adversarial_latents(surrogate, z, composition, config.mining_steps, config.mining_step_size)
        with torch.no_grad():
            metrics[f"val_{name}_gap"] = float(surrogate.standardized(z_plus, composition).mean()
                                               - surrogate.standardized(z, composition).mean())
    return metrics


@torch.no_grad()
def reconstruction_metrics(model: CspVAE, lattice, coords, species) -> dict[str, float]:
    """From latent means: lattice MAE (Å lengths, degrees angles) and coordinate RMSE over occupied
    slots (fractional, periodic; and in Å with the true lattice)."""
    lat, xyz = model.decode_tensors(model.encode(lattice, coords, species), species)
    occupied = species != EMPTY
    delta = xyz - coords
    delta = delta - torch.round(delta)
    cart = torch.bmm(delta, lattice_matrices(lattice))
    n = occupied.sum().clamp(min=1)
    return {"val_length_mae": float((lat[:, :3] - lattice[:, :3]).abs().mean()),
            "val_angle_mae": float((lat[:, 3:] - lattice[:, 3:]).abs().mean()),
            "val_coord_rmse": float((delta.square().sum(dim=2)[occupied].sum() / (3 * n)).sqrt()),
            "val_coord_rmse_angstrom": float((cart.square().sum(dim=2)[occupied].sum() / (3 * n)).sqrt())}


@torch.no_grad()
def prior_validity(model: CspVAE, species: torch.Tensor, n: int, seed: int) -> float:
    """Share of ``n`` decodes from N(0, I) (seeded) with compositions drawn from ``species`` (B, S)
    that are structurally valid."""
    device = model.lattice_mean.device
    generator = torch.Generator(device=device).manual_seed(seed)
    z = torch.randn((n, model.config.latent), generator=generator, device=device)
    picks = torch.randint(len(species), (n,), generator=generator, device=device)
    structures, _ = model.decode(z, species[picks])
    return sum(1 for s in structures if s is not None and structurally_valid(s)) / n


def rebuild_csp_vae(hyperparameters: dict, targets: list[str], state: dict, where: str) -> CspVAE:
    """A csp_vae from its stored hyperparameters and state dict (eval mode)."""
    try:
        model = CspVAE(CspVAEConfig.from_dict(hyperparameters["model"]))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CrystalStudioError(f"{where}: checkpoint does not match its hyperparameters ({exc})") from None
    model.targets = list(targets)
    return model.eval()


def save_csp_vae(project: Project, model: CspVAE, name: str, metrics: dict, training: dict | None = None,
                 dataset_id: int | None = None, run_id: int | None = None, complete_run: str | None = None,
                 targets: list[str] | None = None) -> int:
    """Store a csp_vae as a model of kind ``csp_vae``; returns the model id. Its one target is the
    surrogates' energy property."""
    energy = (training or {}).get("energy", "energy_per_atom")
    return store.add_model(project, name=name, kind=KIND, targets=list(targets or [energy]), normalization={},
                           hyperparameters={"model": model.config.as_dict(), "training": training or {}},
                           metrics=metrics, checkpoint=state_bytes(model), dataset_id=dataset_id, run_id=run_id,
                           complete_run=complete_run)
