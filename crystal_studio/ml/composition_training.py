"""Training the composition VAE (:mod:`crystal_studio.ml.models.composition_vae`) as a stored run.

What a run does:

1. reads the dataset's formulas, one entry per reduced formula (the lowest formation energy where
   known), with the decomposition class: the stored ``decomposition_components`` property
   (``crystal-studio hull``) or, when absent, one computed here from the dataset's formation energies
   with pymatgen's phase diagrams; without formation energies the model is unconditioned;
2. splits the formulas (seeded) into train and validation;
3. trains with Adam, loss = recon_weight · cross-entropy + β · KL + class_weight · class cross-entropy,
   optionally oversampling formulas with rare numbers of elements; early stopping on the validation
   loss; after every epoch the metrics go to the store and the resumable state to the run's state file;
4. stores the best model with its validation metrics (reconstruction accuracy of exact formulas,
   class accuracy) and completes the run in one transaction.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.formulas import DEFAULT_THRESHOLD, fraction_vector
from crystal_studio.core.options import option, range_problems
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.ml.elements import ELEMENTS, unsupported_elements
from crystal_studio.ml.models.composition_vae import CompositionVAE, CompositionVAEConfig, decode_formulas
from crystal_studio.ml.predictor import reopened_run, saved_bytes, state_bytes
from crystal_studio.ml.runtime import describe_device, package_versions, resolve_device, set_threads
from crystal_studio.store import models as store
from crystal_studio.store.project import Project, StructureQuery

KIND = "composition_vae"
STATE_VERSION = 1
CLASS_PROPERTY = "decomposition_components"
ENERGY_PROPERTY = "formation_energy_per_atom"


@dataclass
class CompositionVAETrainConfig:
    """Everything that determines a composition-VAE training run (stored with it)."""

    kind: str = option(KIND, "model kind", choices=(KIND,))
    epochs: int = option(300, "maximum epochs", minimum=1)
    seed: int = option(0, "seed of the split, initialization, noise and batch order")
    batch_size: int = option(256, "formulas per batch", minimum=1)
    lr: float = option(1e-3, "learning rate (Adam)", minimum=0.0)
    patience: int = option(40, "early stopping: epochs without a better validation loss", minimum=1)
    hidden: int = option(100, "width of the hidden layers of encoder, decoder and classifier", minimum=1)
    latent: int = option(10, "latent dimensions", minimum=1)
    beta: float = option(1.0, "weight of the KL term", minimum=0.0)
    recon_weight: float = option(100.0, "weight of the reconstruction cross-entropy (as if the formula were that many "
                                        "atom draws; near 1 the KL term collapses the latent space)", minimum=0.0)
    class_weight: float = option(1.0, "weight of the decomposition-class cross-entropy", minimum=0.0)
    max_classes: int = option(4, "decomposition classes 1..N (N = N or more products; 1 = unconditioned)",
                              minimum=1, maximum=12)
    oversample: float = option(0.0, "oversampling of rare element counts: formula weight ∝ (formulas with the "
                                    "same number of elements)^-oversample (0: off, 1: every count equally often)",
                               minimum=0.0, maximum=1.0)
    threshold: float = option(DEFAULT_THRESHOLD, "decoding threshold T on element fractions", minimum=1e-4,
                              maximum=0.5)
    val_share: float = option(0.1, "share of formulas held out for validation", minimum=0.01, maximum=0.5)
    device: str = option("auto", "auto (GPU when available), cpu or cuda")
    threads: int = option(0, "CPU threads for torch (0: torch's default)", minimum=0)

    def validate(self) -> None:
        problems = range_problems(self)
        if problems:
            raise CrystalStudioError("composition_vae: " + "; ".join(problems))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> CompositionVAETrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


CONFIG = CompositionVAETrainConfig


@dataclass
class FormulaData:
    """One entry per reduced formula of a dataset: formula, class index (0-based, -1 unknown)."""

    formulas: list[str]
    classes: np.ndarray
    skipped: Counter


def load_formulas(project: Project, dataset: str, max_classes: int, progress: ProgressCallback = no_progress,
                  cancel: CancelToken | None = None) -> FormulaData:
    """The dataset's distinct reduced formulas with their decomposition classes (see the module docstring)."""
    cancel = cancel or CancelToken()
    rows = project.page(StructureQuery(dataset=dataset), limit=project.count(StructureQuery(dataset=dataset)))
    if not rows:
        raise CrystalStudioError(f"dataset '{dataset}' has no structures")
    skipped: Counter = Counter()
    best: dict[str, dict] = {}
    for row in rows:
        bad = unsupported_elements(row["elements"])
        if bad:
            skipped[f"element(s) not covered: {', '.join(bad)}"] += 1
            continue
        energy = row["properties"].get(ENERGY_PROPERTY, math.inf)
        kept = best.get(row["reduced_formula"])
        if kept is None or energy < kept["properties"].get(ENERGY_PROPERTY, math.inf):
            best[row["reduced_formula"]] = row
    formulas = sorted(best)
    components = [best[f]["properties"].get(CLASS_PROPERTY) for f in formulas]
    if max_classes > 1 and all(c is None for c in components):
        components = _hull_components(formulas, best, progress, cancel)
    classes = np.array([-1 if c is None or not math.isfinite(c) else min(int(c), max_classes) - 1
                        for c in components], dtype=np.int64)
    if max_classes == 1:
        classes[:] = 0
    return FormulaData(formulas, classes, skipped)


def _hull_components(formulas: list[str], rows: dict[str, dict], progress: ProgressCallback,
                     cancel: CancelToken) -> list[float | None]:
    """Decomposition counts from the dataset's own hull (None without a formation energy)."""
    from crystal_studio.core.hull import dataset_hull

    entries = [(k, f, rows[f]["properties"][ENERGY_PROPERTY]) for k, f in enumerate(formulas)
               if ENERGY_PROPERTY in rows[f]["properties"]]
    if not entries:
        return [None] * len(formulas)
    out: list[float | None] = [None] * len(formulas)
    for result in dataset_hull(entries, progress, cancel):
        out[result.structure_id] = float(result.n_components)
    return out


def _vectors(formulas: list[str]) -> torch.Tensor:
    index = {s: i for i, s in enumerate(ELEMENTS)}
    return torch.as_tensor(np.stack([fraction_vector(f, ELEMENTS, index) for f in formulas]), dtype=torch.float32)


def _split(n: int, val_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 4:
        raise CrystalStudioError(f"need at least 4 distinct formulas to train a composition VAE, found {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(val_share * n))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def sampling_weights(vectors: torch.Tensor, power: float) -> torch.Tensor:
    """Per-formula sampling weight ∝ (number of formulas with the same element count)^-power."""
    counts = (vectors > 0).sum(dim=1)
    frequency = {int(c): int(n) for c, n in zip(*counts.unique(return_counts=True), strict=True)}
    return torch.tensor([frequency[int(c)] ** -power for c in counts], dtype=torch.float64)


def train_composition_vae(project: Project, dataset: str, config: CompositionVAETrainConfig,
                          name: str | None = None, progress: ProgressCallback = no_progress,
                          cancel: CancelToken | None = None):
    """Train a composition VAE on the formulas of ``dataset`` and store it; see the module docstring."""
    cancel = cancel or CancelToken()
    config.validate()
    device = resolve_device(config.device)
    set_threads(config.threads)
    data = load_formulas(project, dataset, config.max_classes, progress, cancel)
    train_rows, val_rows = _split(len(data.formulas), config.val_share, config.seed)
    parameters = {"dataset": dataset, "dataset_id": project.dataset_id(dataset), "kind": KIND,
                  "config": config.as_dict(), "name": name or f"composition VAE on {dataset}",
                  "n_formulas": len(data.formulas), "skipped": dict(data.skipped)}
    run_id = store.create_run(project, "train", parameters, config.seed, describe_device(device), package_versions())
    return _execute(project, run_id, parameters, config, data, (train_rows, val_rows), None, device, progress,
                    cancel)


def resume_composition_vae(project: Project, run_id: int, config: CompositionVAETrainConfig,
                           progress: ProgressCallback = no_progress, cancel: CancelToken | None = None):
    """Continue an interrupted composition-VAE run from its last completed epoch."""
    cancel = cancel or CancelToken()
    run, device, state = reopened_run(project, run_id, config)
    data = load_formulas(project, run.parameters["dataset"], config.max_classes, progress, cancel)
    split = _split(len(data.formulas), config.val_share, config.seed)
    store.update_run(project, run_id, status="running", message="", device=describe_device(device))
    return _execute(project, run_id, run.parameters, config, data, split, state, device, progress, cancel)


def _model_config(config: CompositionVAETrainConfig) -> CompositionVAEConfig:
    return CompositionVAEConfig(hidden=config.hidden, latent=config.latent, n_classes=config.max_classes,
                                threshold=config.threshold)



def _execute(project: Project, run_id: int, parameters: dict, config: CompositionVAETrainConfig,
             data: FormulaData, split: tuple[np.ndarray, np.ndarray], state: dict | None, device: torch.device,
             progress: ProgressCallback, cancel: CancelToken):
    from crystal_studio.ml.training import TrainResult

    torch.manual_seed(config.seed)
    model = CompositionVAE(_model_config(config)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    noise = torch.Generator(device=device).manual_seed(config.seed + 1)
    order = torch.Generator().manual_seed(config.seed + 2)
    x = _vectors(data.formulas).to(device)
    y = torch.as_tensor(data.classes, device=device)
    train_rows, val_rows = (torch.as_tensor(r, device=device) for r in split)
    val_formulas = [data.formulas[k] for k in split[1]]
    known = y[train_rows] >= 0
    if known.any():
        frequency = torch.bincount(y[train_rows][known], minlength=config.max_classes).double()
        model.class_prior.copy_((frequency / frequency.sum()).float())
    weights = sampling_weights(x[train_rows].cpu(), config.oversample)
    epoch, best, best_val, best_epoch, bad = 0, None, math.inf, -1, 0

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
            picks = torch.multinomial(weights, n_train, replacement=config.oversample > 0, generator=order)
            totals = Counter()
            for start in range(0, n_train, config.batch_size):
                rows = train_rows[picks[start:start + config.batch_size].to(device)]
                terms = model.losses(x[rows], y[rows].clamp(min=0), y[rows] >= 0, noise)
                loss = _weighted(terms, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for key, value in terms.items():
                    totals[key] += float(value.detach()) * len(rows)
                totals["loss"] += float(loss.detach()) * len(rows)
            metrics = {f"train_{k}" if k != "loss" else "train_loss": v / n_train for k, v in totals.items()}
            metrics.update(_validation(model, x[val_rows], y[val_rows], val_formulas, config, noise))
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
            progress(ProgressEvent(epoch, config.epochs, f"epoch {epoch}: val loss {metrics['val_loss']:.4g}",
                                   metrics))
        model.load_state_dict(best)
        model.eval()
        final = _validation(model, x[val_rows], y[val_rows], val_formulas, config, noise)
        final["n_train"], final["n_val"] = float(n_train), float(len(val_rows))
        stopped = f", early stop after epoch {epoch}" if epoch < config.epochs else ""
        message = (f"trained on {n_train} formulas (val {len(val_rows)}); best epoch {best_epoch + 1}{stopped}; "
                   f"val exact-formula reconstruction {final['val_formula_accuracy']:.1%}")
        training = {**config.as_dict(), "dataset": parameters["dataset"], "epochs_run": epoch,
                    "best_epoch": best_epoch + 1, "class_prior": model.class_prior.tolist()}
        model_id = save_composition_vae(project, model, parameters["name"], {"composition": final}, training,
                                        parameters["dataset_id"], run_id, complete_run=message)
        store.clear_run_state(project, run_id)
    return TrainResult(model_id, run_id, KIND, {"composition": final}, {"composition": final}, message)


def _weighted(terms: dict[str, torch.Tensor], config: CompositionVAETrainConfig) -> torch.Tensor:
    return (config.recon_weight * terms["reconstruction"] + config.beta * terms["kl"]
            + config.class_weight * terms["classification"])


@torch.no_grad()
def _validation(model: CompositionVAE, x: torch.Tensor, y: torch.Tensor, truth: list[str],
                config: CompositionVAETrainConfig, noise: torch.Generator) -> dict[str, float]:
    """Validation loss terms, exact-formula reconstruction from the latent mean, and class accuracy."""
    model.eval()
    terms = model.losses(x, y.clamp(min=0), y >= 0, noise)
    mu, _ = model.encode(x)
    decoded = decode_formulas(model.decode(mu, model.class_logits(x).argmax(dim=1)), config.threshold)
    metrics = {f"val_{k}": float(v) for k, v in terms.items()}
    metrics["val_loss"] = float(_weighted(terms, config))
    metrics["val_formula_accuracy"] = float(np.mean([a == b for a, b in zip(decoded, truth, strict=True)]))
    labelled = y >= 0
    if labelled.any():
        predicted = model.class_logits(x[labelled]).argmax(dim=1)
        metrics["val_class_accuracy"] = float((predicted == y[labelled]).float().mean())
    return metrics


def rebuild_composition_vae(hyperparameters: dict, targets: list[str], state: dict, where: str) -> CompositionVAE:
    """A composition VAE from its stored hyperparameters and state dict (eval mode)."""
    try:
        model = CompositionVAE(CompositionVAEConfig.from_dict(hyperparameters["model"]))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CrystalStudioError(f"{where}: checkpoint does not match its hyperparameters ({exc})") from None
    return model.eval()


def save_composition_vae(project: Project, model: CompositionVAE, name: str, metrics: dict,
                         training: dict | None = None, dataset_id: int | None = None, run_id: int | None = None,
                         complete_run: str | None = None) -> int:
    """Store a composition VAE as a model of kind ``composition_vae``; returns the model id."""
    return store.add_model(project, name=name, kind=KIND, targets=[], normalization={},
                           hyperparameters={"model": model.config.as_dict(), "training": training or {}},
                           metrics=metrics, checkpoint=state_bytes(model), dataset_id=dataset_id, run_id=run_id,
                           complete_run=complete_run)
