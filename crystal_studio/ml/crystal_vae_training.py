"""Training the Crystal-LSBO VAE family (:mod:`crystal_studio.ml.models.crystal_vae`) as a stored run.

What a run does:

1. reads the dataset's structures (those with more than ``max_sites`` sites, partial occupancy or
   elements outside the models' list are skipped and counted by reason) and the values of the chosen
   ``targets`` (optional; NaN where a structure has none);
2. splits them (seeded) into train and validation, and standardizes lattice parameters and targets
   with the training split's mean and spread;
3. trains the four VAEs and their property heads together with RMSprop, loss =
   recon_weight · Σ reconstruction + β · Σ KL + property_weight · Σ property; the combined VAE sees
   the sub-VAEs' latent means detached, so it models them without moving them; early stopping on
   the validation loss; after every epoch the per-term metrics go to the store and the full
   resumable state (model, optimizer, RNG states, early-stopping counters) to the run's state file;
4. stores the best model with its validation metrics — reconstruction through the whole chain
   (encoders → combined VAE → decoders, latent means): element accuracy per occupied slot, site-count
   accuracy, lattice MAE in Å and degrees, coordinate RMSE (fractional and Å) — and the structural
   validity of ``prior_samples`` decodes from N(0, I), and completes the run in one transaction.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.options import option, range_problems
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.ml.models.crystal_vae import (
    EMPTY,
    PARTS,
    CrystalArrays,
    CrystalVAE,
    CrystalVAEConfig,
    arrays_to_structures,
    structurally_valid,
    structure_arrays,
)
from crystal_studio.ml.predictor import reopened_run, saved_bytes, state_bytes
from crystal_studio.ml.runtime import describe_device, package_versions, resolve_device, set_threads
from crystal_studio.store import models as store
from crystal_studio.store.project import Project, StructureQuery

KIND = "crystal_vae"
STATE_VERSION = 1


@dataclass
class CrystalVAETrainConfig:
    """Everything that determines a crystal-VAE training run (stored with it)."""

    kind: str = option(KIND, "model kind", choices=(KIND,))
    targets: list[str] = field(default_factory=list, metadata={
        "help": "properties the property heads learn (comma-separated; none: no heads)", "unit": "",
        "minimum": None, "maximum": None, "choices": None})
    epochs: int = option(300, "maximum epochs", minimum=1)
    seed: int = option(0, "seed of the split, initialization, noise and batch order")
    batch_size: int = option(256, "crystals per batch", minimum=1)
    lr: float = option(5e-4, "learning rate (RMSprop)", minimum=0.0)
    patience: int = option(40, "early stopping: epochs without a better validation loss", minimum=1)
    max_sites: int = option(20, "most sites per crystal (bigger cells are skipped)", minimum=1, maximum=200)
    hidden: int = option(128, "width of the MLPs (lattice and combined VAEs, property heads)", minimum=1)
    channels: int = option(64, "channels of the 1-D convolutions over the site list", minimum=1)
    lattice_latent: int = option(3, "latent dimensions of the Lattice-VAE", minimum=1)
    coord_latent: int = option(16, "latent dimensions of the Coordinate-VAE", minimum=1)
    element_latent: int = option(16, "latent dimensions of the Element-VAE", minimum=1)
    latent: int = option(20, "latent dimensions of the Combined-VAE (the material latent space)", minimum=1)
    recon_weight: float = option(5.0, "weight of the reconstruction terms (paper: 5)", minimum=0.0)
    beta: float = option(1.0, "weight β of the KL terms (paper: 10, under which the coordinate and element "
                              "codes collapse with these per-crystal summed errors; 1 keeps reconstruction usable)",
                         minimum=0.0)
    property_weight: float = option(1.0, "weight of the property-head terms (paper: 1)", minimum=0.0)
    val_share: float = option(0.1, "share of crystals held out for validation", minimum=0.01, maximum=0.5)
    prior_samples: int = option(256, "decodes from N(0, I) whose structural validity is measured each epoch",
                                minimum=1)
    device: str = option("auto", "auto (GPU when available), cpu or cuda")
    threads: int = option(0, "CPU threads for torch (0: torch's default)", minimum=0)

    def __post_init__(self):
        if isinstance(self.targets, str):  # --set targets=a,b
            self.targets = [t.strip() for t in self.targets.split(",") if t.strip()]
        from crystal_studio.core.properties import canonical_name

        self.targets = [canonical_name(t) for t in self.targets]

    def validate(self) -> None:
        problems = range_problems(self)
        if len(set(self.targets)) != len(self.targets):
            problems.append("targets are repeated")
        if problems:
            raise CrystalStudioError("crystal_vae: " + "; ".join(problems))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> CrystalVAETrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


CONFIG = CrystalVAETrainConfig


@dataclass
class CrystalData:
    """The encodable crystals of a dataset as arrays, with their structure ids and raw targets."""

    arrays: CrystalArrays
    ids: list[int]
    targets: np.ndarray  # (N, T), NaN where unknown
    skipped: Counter


def load_crystals(project: Project, dataset: str, targets: list[str], max_sites: int,
                  progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> CrystalData:
    """The dataset's structures with at most ``max_sites`` sites as arrays (see the module docstring)."""
    cancel = cancel or CancelToken()
    query = StructureQuery(dataset=dataset)
    total = project.count(query)
    if not total:
        raise CrystalStudioError(f"dataset '{dataset}' has no structures")
    ids, structures, values = [], [], []
    for k, (row, structure) in enumerate(project.iter_structures(query)):
        if k % 500 == 0:
            cancel.check()
            progress(ProgressEvent(k, total, "reading structures"))
        ids.append(row["id"])
        structures.append(structure)
        values.append([row["properties"].get(t, math.nan) for t in targets])
    arrays, kept, skipped = structure_arrays(structures, max_sites)
    y = np.array(values, dtype=np.float64).reshape(len(ids), len(targets))[kept]
    for j, target in enumerate(targets):
        if not np.isfinite(y[:, j]).any():
            raise CrystalStudioError(f"no usable structure in '{dataset}' has a value for {target}")
    return CrystalData(arrays, [ids[k] for k in kept], y, skipped)


def _split(n: int, val_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 4:
        raise CrystalStudioError(f"need at least 4 usable structures to train a crystal VAE, found {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(val_share * n))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _model_config(config: CrystalVAETrainConfig) -> CrystalVAEConfig:
    return CrystalVAEConfig(max_sites=config.max_sites, lattice_latent=config.lattice_latent,
                            coord_latent=config.coord_latent, element_latent=config.element_latent,
                            latent=config.latent, hidden=config.hidden, channels=config.channels,
                            n_targets=len(config.targets))


def train_crystal_vae(project: Project, dataset: str, config: CrystalVAETrainConfig, name: str | None = None,
                      progress: ProgressCallback = no_progress, cancel: CancelToken | None = None):
    """Train a crystal VAE on the structures of ``dataset`` and store it; see the module docstring."""
    cancel = cancel or CancelToken()
    config.validate()
    device = resolve_device(config.device)
    set_threads(config.threads)
    data = load_crystals(project, dataset, config.targets, config.max_sites, progress, cancel)
    split = _split(len(data.ids), config.val_share, config.seed)
    targets = f" with {'+'.join(config.targets)} heads" if config.targets else ""
    parameters = {"dataset": dataset, "dataset_id": project.dataset_id(dataset), "kind": KIND,
                  "config": config.as_dict(), "name": name or f"crystal VAE{targets} on {dataset}",
                  "n_structures": len(data.ids), "skipped": dict(data.skipped)}
    run_id = store.create_run(project, "train", parameters, config.seed, describe_device(device), package_versions())
    return _execute(project, run_id, parameters, config, data, split, None, device, progress, cancel)


def resume_crystal_vae(project: Project, run_id: int, config: CrystalVAETrainConfig,
                       progress: ProgressCallback = no_progress, cancel: CancelToken | None = None):
    """Continue an interrupted crystal-VAE run from its last completed epoch."""
    cancel = cancel or CancelToken()
    run, device, state = reopened_run(project, run_id, config)
    data = load_crystals(project, run.parameters["dataset"], config.targets, config.max_sites, progress, cancel)
    split = _split(len(data.ids), config.val_share, config.seed)
    store.update_run(project, run_id, status="running", message="", device=describe_device(device))
    return _execute(project, run_id, run.parameters, config, data, split, state, device, progress, cancel)



def _weighted(terms: dict[str, torch.Tensor], config: CrystalVAETrainConfig) -> torch.Tensor:
    total = torch.zeros((), device=next(iter(terms.values())).device)
    for key, value in terms.items():
        weight = {"recon": config.recon_weight, "kl": config.beta, "property": config.property_weight}[
            key.rsplit("_", 1)[1]]
        total = total + weight * value
    return total


def _execute(project: Project, run_id: int, parameters: dict, config: CrystalVAETrainConfig, data: CrystalData,
             split: tuple[np.ndarray, np.ndarray], state: dict | None, device: torch.device,
             progress: ProgressCallback, cancel: CancelToken):
    from crystal_studio.ml.training import TrainResult

    torch.manual_seed(config.seed)
    model = CrystalVAE(_model_config(config)).to(device)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=config.lr)
    noise = torch.Generator(device=device).manual_seed(config.seed + 1)
    order = torch.Generator().manual_seed(config.seed + 2)
    lattice, coords, species = model.tensors(data.arrays)
    y = torch.as_tensor(data.targets, dtype=torch.float32, device=device) if config.targets else None
    train_rows, val_rows = (torch.as_tensor(r, device=device) for r in split)
    _fit_scales(model, lattice[train_rows], None if y is None else y[train_rows])
    epoch, best, best_val, best_epoch, bad = 0, None, math.inf, -1, 0

    def batch(rows):
        return lattice[rows], coords[rows], species[rows], None if y is None else y[rows]

    def cancelled() -> str:
        return f"cancelled after epoch {epoch}; resume with: crystal-studio train PROJECT --resume {run_id}"

    store.announce_run(run_id, progress)
    with store.guarded_run(project, run_id, cancelled):
        if state is not None:
            if state.get("version") != STATE_VERSION:
                raise CrystalStudioError("the saved training state is from another version; start a new run")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            noise.set_state(state["noise"])
            order.set_state(state["order"])
            epoch, best, best_val, best_epoch, bad = (state["epoch"], state["best"], state["best_val"],
                                                      state["best_epoch"], state["bad"])
        store.delete_metrics_after(project, run_id, epoch - 1)
        n_train = len(train_rows)
        while epoch < config.epochs and bad < config.patience:
            cancel.check()
            model.train()
            picks = torch.randperm(n_train, generator=order).to(device)
            totals: Counter = Counter()
            for start in range(0, n_train, config.batch_size):
                rows = train_rows[picks[start:start + config.batch_size]]
                terms = model.losses(*batch(rows), generator=noise)
                loss = _weighted(terms, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for key, value in terms.items():
                    totals[key] += float(value.detach()) * len(rows)
                totals["loss"] += float(loss.detach()) * len(rows)
            metrics = {f"train_{k}": v / n_train for k, v in totals.items()}
            metrics.update(_validation(model, batch(val_rows), config, noise))
            if not math.isfinite(metrics["val_loss"]):
                raise CrystalStudioError(f"crystal_vae training diverged at epoch {epoch + 1} (non-finite loss); "
                                         "try a smaller --lr")
            if metrics["val_loss"] < best_val:
                best, best_val, best_epoch, bad = ({k: v.detach().clone() for k, v in model.state_dict().items()},
                                                   metrics["val_loss"], epoch, 0)
            else:
                bad += 1
            store.record_metrics(project, run_id, epoch, metrics)
            epoch += 1
            store.save_run_state(project, run_id, saved_bytes({
                "version": STATE_VERSION, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "noise": noise.get_state(), "order": order.get_state(), "epoch": epoch, "best": best,
                "best_val": best_val, "best_epoch": best_epoch, "bad": bad}))
            progress(ProgressEvent(epoch, config.epochs,
                                   f"epoch {epoch}: val loss {metrics['val_loss']:.4g}, prior validity "
                                   f"{metrics['val_prior_validity']:.0%}", metrics))
        model.load_state_dict(best)
        model.eval()
        final = _validation(model, batch(val_rows), config, noise)
        final["n_train"], final["n_val"] = float(n_train), float(len(val_rows))
        stopped = f", early stop after epoch {epoch}" if epoch < config.epochs else ""
        message = (f"trained on {n_train} crystals (val {len(val_rows)}); best epoch {best_epoch + 1}{stopped}; "
                   f"val element accuracy {final['val_element_accuracy']:.1%}, lattice MAE "
                   f"{final['val_length_mae']:.3g} Å / {final['val_angle_mae']:.3g}°, prior validity "
                   f"{final['val_prior_validity']:.1%}")
        training = {**config.as_dict(), "dataset": parameters["dataset"], "epochs_run": epoch,
                    "best_epoch": best_epoch + 1, "skipped": parameters.get("skipped", {})}
        model_id = save_crystal_vae(project, model, parameters["name"], {"crystal": final}, training,
                                    parameters["dataset_id"], run_id, complete_run=message,
                                    targets=list(config.targets))
        store.clear_run_state(project, run_id)
    return TrainResult(model_id, run_id, KIND, {"crystal": final}, {"crystal": final}, message)


def _fit_scales(model: CrystalVAE, lattice: torch.Tensor, y: torch.Tensor | None) -> None:
    model.lattice_mean.copy_(lattice.mean(dim=0))
    model.lattice_std.copy_(lattice.std(dim=0, unbiased=False).clamp(min=1e-3))
    if y is not None:
        for j in range(y.shape[1]):
            known = y[:, j][torch.isfinite(y[:, j])]
            if len(known):
                model.target_mean[j] = known.mean()
                model.target_std[j] = known.std(unbiased=False).clamp(min=1e-6)


@torch.no_grad()
def reconstruction_metrics(model: CrystalVAE, lattice: torch.Tensor, coords: torch.Tensor,
                           species: torch.Tensor) -> dict[str, float]:
    """Reconstruction through the whole chain from latent means: element accuracy per occupied slot,
    site-count accuracy, lattice MAE (Å for lengths, degrees for angles), coordinate RMSE over
    occupied slots (fractional, periodic; and in Å with the true lattice)."""
    from crystal_studio.ml.models.crystal_vae import lattice_matrices

    z = model.encode(lattice, coords, species)
    lat, xyz, spc = model.decode_arrays(z)
    occupied = species != EMPTY
    delta = xyz - coords
    delta = delta - torch.round(delta)
    cart = torch.bmm(delta, lattice_matrices(lattice))
    n_occupied = occupied.sum().clamp(min=1)
    return {
        "val_element_accuracy": float(((spc == species) & occupied).sum() / n_occupied),
        "val_site_count_accuracy": float(((spc != EMPTY).sum(dim=1) == occupied.sum(dim=1)).float().mean()),
        "val_length_mae": float((lat[:, :3] - lattice[:, :3]).abs().mean()),
        "val_angle_mae": float((lat[:, 3:] - lattice[:, 3:]).abs().mean()),
        "val_coord_rmse": float((delta.square().sum(dim=2)[occupied].sum() / (3 * n_occupied)).sqrt()),
        "val_coord_rmse_angstrom": float((cart.square().sum(dim=2)[occupied].sum() / (3 * n_occupied)).sqrt()),
    }


@torch.no_grad()
def prior_validity(model: CrystalVAE, n: int, seed: int) -> tuple[float, Counter]:
    """Share of ``n`` decodes from N(0, I) (seeded) that are structurally valid, and the decode
    failures by reason (invalid structures count as "distance or volume")."""
    generator = torch.Generator(device=model.lattice_mean.device).manual_seed(seed)
    z = torch.randn((n, model.config.latent), generator=generator, device=model.lattice_mean.device)
    lattice, coords, species = (t.cpu().numpy() for t in model.decode_arrays(z))
    structures, reasons = arrays_to_structures(lattice.astype(np.float64), coords.astype(np.float64), species)
    failures = Counter(r for r in reasons if r is not None)
    valid = 0
    for s in structures:
        if s is not None:
            if structurally_valid(s):
                valid += 1
            else:
                failures["distance or volume"] += 1
    return valid / n, failures


@torch.no_grad()
def _validation(model: CrystalVAE, batch: tuple, config: CrystalVAETrainConfig,
                noise: torch.Generator) -> dict[str, float]:
    model.eval()
    lattice, coords, species, y = batch
    terms = model.losses(lattice, coords, species, y, noise)
    metrics = {f"val_{k}": float(v) for k, v in terms.items()}
    metrics["val_loss"] = float(_weighted(terms, config))
    metrics.update(reconstruction_metrics(model, lattice, coords, species))
    metrics["val_prior_validity"], _ = prior_validity(model, config.prior_samples, config.seed + 3)
    return metrics


def rebuild_crystal_vae(hyperparameters: dict, targets: list[str], state: dict, where: str) -> CrystalVAE:
    """A crystal VAE from its stored hyperparameters and state dict (eval mode)."""
    try:
        model = CrystalVAE(CrystalVAEConfig.from_dict(hyperparameters["model"]))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CrystalStudioError(f"{where}: checkpoint does not match its hyperparameters ({exc})") from None
    model.targets = list(targets)
    return model.eval()


def save_crystal_vae(project: Project, model: CrystalVAE, name: str, metrics: dict, training: dict | None = None,
                     dataset_id: int | None = None, run_id: int | None = None, complete_run: str | None = None,
                     targets: list[str] | None = None) -> int:
    """Store a crystal VAE as a model of kind ``crystal_vae``; returns the model id."""
    targets = list(targets if targets is not None else getattr(model, "targets", []))
    if len(targets) != model.config.n_targets:
        raise CrystalStudioError(f"a crystal VAE with {model.config.n_targets} property heads needs as many "
                                 f"target names (got {len(targets)})")
    return store.add_model(project, name=name, kind=KIND, targets=targets,
                           normalization={"target_mean": model.target_mean.tolist(),
                                          "target_std": model.target_std.tolist()},
                           hyperparameters={"model": model.config.as_dict(), "training": training or {}},
                           metrics=metrics, checkpoint=state_bytes(model), dataset_id=dataset_id, run_id=run_id,
                           complete_run=complete_run)


__all__ = ["CONFIG", "PARTS", "CrystalVAETrainConfig", "load_crystals", "prior_validity", "rebuild_crystal_vae",
           "reconstruction_metrics", "resume_crystal_vae", "save_crystal_vae", "train_crystal_vae"]
