"""Training the Court et al. voxel models (:mod:`crystal_studio.ml.models.voxel_vae`) as stored runs.

What a run does:

1. reads the dataset's structures, skipping (counted by reason) those :func:`~crystal_studio.ml.voxels.
   voxel_skip_reason` refuses, and voxelizes the rest once at ``grid``³ (density, species, lattice);
   for a ``voxel_vae`` also the value of the ``condition`` property, whose deciles over the training
   split become the one-hot condition (crystals without a value get an all-zero condition);
2. splits them (seeded) into train and validation;
3. trains in stages, each with Adam, early stopping on its validation loss and the best epoch kept:
   the U-Net (cross-entropy of the species classes per voxel), then, for a ``voxel_vae``, the
   conditional VAE through the frozen U-Net (deep-feature-consistent loss + β-KL). With ``augment``
   every training crystal is turned by a random one of the 24 proper 90° rotations each epoch.
   bfloat16 autocast on CUDA with ``mixed_precision``. After every epoch the metrics go to the store
   (one step per epoch over all stages) and the full resumable state (networks, optimizer, RNG
   states, early-stopping counters) to the run's state file;
4. stores the model with its validation metrics and completes the run in one transaction:
   for the U-Net the voxel and occupied-voxel accuracy and the share of crystals whose segmented
   map gives back their composition; for the VAE also the reconstruction from latent means (lattice
   length MAE in Å, mean atom-position error in Å over the crystals decoded with the right
   composition, composition recovery; the two errors are left out when no crystal qualifies) and
   the structural validity of ``prior_samples`` decodes from N(0, I) under uniformly drawn deciles.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from pymatgen.core import Structure

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.options import option, range_problems
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.ml.models.crystal_vae import structurally_valid
from crystal_studio.ml.models.voxel_vae import (
    ConditionalVoxelVAE,
    VoxelGenerator,
    VoxelUNet,
    VoxelUNetConfig,
    VoxelVAEConfig,
    one_hot_deciles,
)
from crystal_studio.ml.predictor import reopened_run, saved_bytes, state_bytes
from crystal_studio.ml.runtime import describe_device, package_versions, resolve_device, set_threads
from crystal_studio.ml.voxels import (
    VoxelMaps,
    coordinate_channels,
    maps_to_structure,
    random_rotations,
    rotate_maps,
    voxel_skip_reason,
    voxelize_structures,
)
from crystal_studio.store import models as store
from crystal_studio.store.project import Project, StructureQuery

STATE_VERSION = 1


@dataclass
class VoxelUNetTrainConfig:
    """Everything that determines a voxel U-Net training run (stored with it)."""

    kind: str = option("voxel_unet", "model kind", choices=("voxel_unet",))
    epochs: int = option(100, "maximum epochs", minimum=1)
    seed: int = option(0, "seed of the split, initialization, rotations and batch order")
    batch_size: int = option(32, "crystals per batch", minimum=1)
    lr: float = option(1e-3, "learning rate (Adam)", minimum=0.0)
    patience: int = option(20, "early stopping: epochs without a better validation loss", minimum=1)
    grid: int = option(16, "voxels per cell side (a power of two ≥ 8; paper: 32, practical on a GPU)",
                       minimum=8, maximum=128)
    hidden: int = option(16, "channels of the first conv layer (doubled per level or downsampling)", minimum=1)
    layers: int = option(3, "resolution levels of the U-Net", minimum=1, maximum=6)
    width_scale: float = option(0.5, "Gaussian width of an atom as a multiple of its ionic radius", minimum=0.05)
    max_atoms: int = option(40, "most atoms per cell (bigger cells are skipped)", minimum=1, maximum=200)
    angle_tolerance: float = option(5.0, "cells with an angle further than this from 90° are skipped", unit="°",
                                    minimum=0.0, maximum=45.0)
    length_tolerance: float = option(0.1, "cells whose longest/shortest length exceeds 1 + this are skipped",
                                     minimum=0.0)
    augment: bool = option(True, "turn each training crystal by a random 90° rotation every epoch")
    val_share: float = option(0.1, "share of crystals held out for validation", minimum=0.01, maximum=0.5)
    device: str = option("auto", "auto (GPU when available), cpu or cuda")
    threads: int = option(0, "CPU threads for torch (0: torch's default)", minimum=0)
    mixed_precision: bool = option(True, "bfloat16 autocast on CUDA (ignored on CPU)")

    def validate(self) -> None:
        problems = range_problems(self)
        if self.grid & (self.grid - 1):
            problems.append(f"grid must be a power of two (got {self.grid})")
        elif self.grid % 2 ** (self.layers - 1):
            problems.append(f"grid {self.grid} is too coarse for {self.layers} U-Net levels")
        if problems:
            raise CrystalStudioError(f"{self.kind}: " + "; ".join(problems))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


@dataclass
class VoxelVAETrainConfig(VoxelUNetTrainConfig):
    """Everything that determines a conditional voxel VAE training run (U-Net stage included)."""

    kind: str = option("voxel_vae", "model kind", choices=("voxel_vae",))
    unet_epochs: int = option(0, "maximum epochs of the U-Net stage (0: as many as epochs)", minimum=0)
    condition: str = option("formation_energy_per_atom", "property whose decile conditions the VAE "
                                                         "('none': unconditioned)")
    deciles: int = option(10, "condition classes (quantile bins of the condition property)", minimum=2, maximum=100)
    latent: int = option(256, "latent dimensions", minimum=1)
    beta: float = option(1.0, "weight β of the KL term", minimum=0.0)
    feature_weight: float = option(1.0, "weight of the deep-feature-consistent term (U-Net hidden layers)",
                                   minimum=0.0)
    prior_samples: int = option(64, "decodes from N(0, I) whose structural validity is measured at the end",
                                minimum=1)

    def __post_init__(self):
        from crystal_studio.core.properties import canonical_name

        if self.condition.strip().lower() in ("", "none"):
            self.condition = "none"
        else:
            self.condition = canonical_name(self.condition)

    @property
    def n_conditions(self) -> int:
        return 0 if self.condition == "none" else self.deciles


@dataclass
class VoxelData:
    """The voxelizable crystals of a dataset: maps, structures, ids and condition values (NaN: none)."""

    maps: VoxelMaps
    structures: list[Structure]
    ids: list[int]
    values: np.ndarray
    skipped: Counter


def load_voxels(project: Project, dataset: str, config: VoxelUNetTrainConfig,
                progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> VoxelData:
    """The dataset's voxelizable structures as maps (see the module docstring)."""
    cancel = cancel or CancelToken()
    query = StructureQuery(dataset=dataset)
    total = project.count(query)
    if not total:
        raise CrystalStudioError(f"dataset '{dataset}' has no structures")
    condition = getattr(config, "condition", "none")
    ids, structures, values, skipped = [], [], [], Counter()
    for k, (row, structure) in enumerate(project.iter_structures(query)):
        if k % 500 == 0:
            cancel.check()
            progress(ProgressEvent(k, total, "reading structures"))
        reason = voxel_skip_reason(structure, config.max_atoms, config.angle_tolerance, config.length_tolerance)
        if reason is not None:
            skipped[reason] += 1
            continue
        ids.append(row["id"])
        structures.append(structure)
        values.append(row["properties"].get(condition, math.nan) if condition != "none" else math.nan)
    if len(ids) < 4:
        reasons = ", ".join(f"{n} {r}" for r, n in skipped.most_common()) or "none skipped"
        raise CrystalStudioError(f"need at least 4 voxelizable structures in '{dataset}', found {len(ids)} "
                                 f"(skipped: {reasons})")
    values = np.array(values, dtype=np.float64)
    if condition != "none" and not np.isfinite(values).any():
        raise CrystalStudioError(f"no voxelizable structure in '{dataset}' has a value for {condition}")
    progress(ProgressEvent(total, total, f"voxelizing {len(ids)} crystals at {config.grid}³"))
    maps = voxelize_structures(structures, config.grid, config.width_scale)
    return VoxelData(maps, structures, ids, values, skipped)


def _split(n: int, val_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(val_share * n))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _unet_config(config: VoxelUNetTrainConfig, data: VoxelData) -> VoxelUNetConfig:
    elements = sorted({site.specie.Z for s in data.structures for site in s})
    return VoxelUNetConfig(grid=config.grid, channels=config.hidden, levels=config.layers, elements=elements)


def _vae_config(config: VoxelVAETrainConfig) -> VoxelVAEConfig:
    return VoxelVAEConfig(grid=config.grid, channels=config.hidden, latent=config.latent,
                          n_conditions=config.n_conditions)


def _start(project: Project, dataset: str, config: VoxelUNetTrainConfig, name: str | None,
           progress: ProgressCallback, cancel: CancelToken | None):
    cancel = cancel or CancelToken()
    config.validate()
    device = resolve_device(config.device)
    set_threads(config.threads)
    data = load_voxels(project, dataset, config, progress, cancel)
    what = "voxel U-Net" if config.kind == "voxel_unet" else (
        f"voxel VAE ({config.condition} deciles)" if config.n_conditions else "voxel VAE")
    parameters = {"dataset": dataset, "dataset_id": project.dataset_id(dataset), "kind": config.kind,
                  "config": config.as_dict(), "name": name or f"{what} on {dataset} at {config.grid}³",
                  "n_structures": len(data.ids), "skipped": dict(data.skipped)}
    run_id = store.create_run(project, "train", parameters, config.seed, describe_device(device), package_versions())
    return _execute(project, run_id, parameters, config, data, None, device, progress, cancel)


def _resume(project: Project, run_id: int, config: VoxelUNetTrainConfig, progress: ProgressCallback,
            cancel: CancelToken | None):
    cancel = cancel or CancelToken()
    run, device, state = reopened_run(project, run_id, config)
    data = load_voxels(project, run.parameters["dataset"], config, progress, cancel)
    store.update_run(project, run_id, status="running", message="", device=describe_device(device))
    return _execute(project, run_id, run.parameters, config, data, state, device, progress, cancel)


def train_voxel(project: Project, dataset: str, config: VoxelUNetTrainConfig, name: str | None = None,
                progress: ProgressCallback = no_progress, cancel: CancelToken | None = None):
    """Train a voxel U-Net, or a U-Net and then a conditional voxel VAE stored as one model (by
    ``config.kind``), on ``dataset``; see the module docstring."""
    return _start(project, dataset, config, name, progress, cancel)


def resume_voxel(project: Project, run_id: int, config: VoxelUNetTrainConfig,
                 progress: ProgressCallback = no_progress, cancel: CancelToken | None = None):
    """Continue an interrupted voxel U-Net or VAE run from its last completed epoch."""
    return _resume(project, run_id, config, progress, cancel)


@dataclass
class _Tensors:
    """The dataset's maps on the training device, with their conditions (N, C)."""

    density: torch.Tensor
    species: torch.Tensor
    lattice: torch.Tensor
    condition: torch.Tensor


def _autocast(device: torch.device, config: VoxelUNetTrainConfig):
    if device.type == "cuda" and config.mixed_precision:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _unet_terms(unet: VoxelUNet, density: torch.Tensor, species: torch.Tensor) -> dict[str, torch.Tensor]:
    """Segmentation loss and accuracies (all voxels, occupied voxels) of one batch."""
    logits = unet(density).float()
    classes = unet.classes(species)
    loss = torch.nn.functional.cross_entropy(logits, classes)
    with torch.no_grad():
        right = logits.argmax(dim=1) == classes
        occupied = classes > 0
        occupied_accuracy = (right & occupied).sum() / occupied.sum().clamp(min=1)
    return {"loss": loss, "voxel_accuracy": right.float().mean(), "occupied_accuracy": occupied_accuracy}


def _vae_terms(vae: ConditionalVoxelVAE, unet: VoxelUNet, density: torch.Tensor, lattice: torch.Tensor,
               condition: torch.Tensor, config: VoxelVAETrainConfig, noise: torch.Generator) -> dict[str, torch.Tensor]:
    terms = {k: v.float() for k, v in vae.losses(density, coordinate_channels(lattice, config.grid), condition,
                                                 unet, noise).items()}
    terms["loss"] = (terms["density"] + terms["coordinates"] + config.feature_weight * terms["features"]
                     + config.beta * terms["kl"])
    return terms


def _execute(project: Project, run_id: int, parameters: dict, config: VoxelUNetTrainConfig, data: VoxelData,
             state: dict | None, device: torch.device, progress: ProgressCallback, cancel: CancelToken):
    from crystal_studio.ml.training import TrainResult

    is_vae = config.kind == "voxel_vae"
    train_rows, val_rows = _split(len(data.ids), config.val_share, config.seed)
    torch.manual_seed(config.seed)
    generator = VoxelGenerator(_vae_config(config), _unet_config(config, data), config.width_scale) if is_vae else None
    unet = generator.unet if is_vae else VoxelUNet(_unet_config(config, data))
    if is_vae and config.n_conditions:
        known = data.values[train_rows][np.isfinite(data.values[train_rows])]
        if not len(known):
            raise CrystalStudioError(f"no training crystal has a value for {config.condition}")
        edges = np.quantile(known, np.linspace(0, 1, config.deciles + 1)[1:-1])
        generator.decile_edges.copy_(torch.as_tensor(edges))
        condition = one_hot_deciles(data.values, edges)
    else:
        condition = torch.zeros((len(data.ids), 0))
    net = (generator if is_vae else unet).to(device)
    tensors = _Tensors(data.maps.density.to(device), data.maps.species.to(device).long(),
                       data.maps.lattice.to(device), condition.to(device))
    stages = [("unet", (config.unet_epochs or config.epochs) if is_vae else config.epochs)]
    if is_vae:
        stages.append(("vae", config.epochs))
    total_epochs = sum(e for _, e in stages)
    noise = torch.Generator(device=device).manual_seed(config.seed + 1)
    order = torch.Generator().manual_seed(config.seed + 2)
    turns = torch.Generator().manual_seed(config.seed + 3)
    position = {"stage": 0, "epoch": 0, "step": 0, "best": None, "best_val": math.inf, "best_epoch": -1, "bad": 0}
    optimizer_state = None
    if state is not None:
        if state.get("version") != STATE_VERSION:
            raise CrystalStudioError("the saved training state is from another version; start a new run")
        net.load_state_dict(state["model"])
        noise.set_state(state["noise"])
        order.set_state(state["order"])
        turns.set_state(state["turns"])
        position = dict(state["position"])
        optimizer_state = state["optimizer"]
    history: list[str] = []

    def cancelled() -> str:
        return (f"cancelled after epoch {position['step']}; resume with: crystal-studio train PROJECT "
                f"--resume {run_id}")

    def batch(rows: torch.Tensor, augment: bool):
        density, species, lattice = tensors.density[rows], tensors.species[rows], tensors.lattice[rows]
        if augment:
            density, species, lattice = rotate_maps(density, species, lattice,
                                                    random_rotations(len(rows), turns).to(device))
        return density, species, lattice, tensors.condition[rows]

    def terms_of(stage: str, density, species, lattice, cond) -> dict[str, torch.Tensor]:
        with _autocast(device, config):
            if stage == "unet":
                return _unet_terms(unet, density, species)
            return _vae_terms(generator.vae, unet, density, lattice, cond, config, noise)

    train_index = torch.as_tensor(train_rows, device=device)
    val_index = torch.as_tensor(val_rows, device=device)
    store.announce_run(run_id, progress)
    with store.guarded_run(project, run_id, cancelled):
        store.delete_metrics_after(project, run_id, position["step"] - 1)
        while position["stage"] < len(stages):
            stage, stage_epochs = stages[position["stage"]]
            prefix = "unet_" if is_vae and stage == "unet" else ""
            trained = unet if stage == "unet" else generator.vae
            unet.requires_grad_(stage == "unet")
            optimizer = torch.optim.Adam(trained.parameters(), lr=config.lr)
            if optimizer_state is not None:
                optimizer.load_state_dict(optimizer_state)
                optimizer_state = None
            while position["epoch"] < stage_epochs and position["bad"] < config.patience:
                cancel.check()
                trained.train()
                unet.train(stage == "unet")
                picks = torch.randperm(len(train_rows), generator=order).to(device)
                totals: Counter = Counter()
                for start in range(0, len(train_rows), config.batch_size):
                    rows = train_index[picks[start:start + config.batch_size]]
                    terms = terms_of(stage, *batch(rows, config.augment))
                    optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    optimizer.step()
                    for key, value in terms.items():
                        totals[key] += float(value.detach()) * len(rows)
                metrics = {f"{prefix}train_{k}": v / len(train_rows) for k, v in totals.items()}
                net.eval()
                with torch.no_grad():
                    val_terms = terms_of(stage, *batch(val_index, False))
                metrics.update({f"{prefix}val_{k}": float(v) for k, v in val_terms.items()})
                val_loss = metrics[f"{prefix}val_loss"]
                if not math.isfinite(val_loss):
                    raise CrystalStudioError(f"{config.kind} training diverged in epoch {position['step'] + 1} "
                                             "(non-finite loss); try a smaller --lr")
                if val_loss < position["best_val"]:
                    position.update(best={k: v.detach().clone() for k, v in trained.state_dict().items()},
                                    best_val=val_loss, best_epoch=position["epoch"], bad=0)
                else:
                    position["bad"] += 1
                store.record_metrics(project, run_id, position["step"], metrics)
                position["epoch"] += 1
                position["step"] += 1
                store.save_run_state(project, run_id, saved_bytes({
                    "version": STATE_VERSION, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                    "noise": noise.get_state(), "order": order.get_state(), "turns": turns.get_state(),
                    "position": position}))
                progress(ProgressEvent(position["step"], total_epochs,
                                       f"{stage} epoch {position['epoch']}: val loss {val_loss:.4g}", metrics))
            trained.load_state_dict(position["best"])
            stopped = ", early stop" if position["epoch"] < stage_epochs else ""
            history.append(f"{stage}: best epoch {position['best_epoch'] + 1} of {position['epoch']}{stopped}")
            position.update(stage=position["stage"] + 1, epoch=0, best=None, best_val=math.inf, best_epoch=-1, bad=0)
        net.eval()
        unet.requires_grad_(False)
        final = _final_metrics(unet, generator, data, val_rows, tensors, config)
        final["n_train"], final["n_val"] = float(len(train_rows)), float(len(val_rows))
        message = (f"trained on {len(train_rows)} crystals (val {len(val_rows)}) at {config.grid}³; "
                   + "; ".join(history) + f"; val occupied-voxel accuracy {final['val_occupied_accuracy']:.1%}")
        if is_vae:
            if "val_length_mae" in final:
                message += f", lattice MAE {final['val_length_mae']:.3g} Å"
            if "val_position_error" in final:
                message += f", atom-position error {final['val_position_error']:.3g} Å"
            message += (f", composition from latent means {final['val_decoded_composition_recovery']:.0%}, "
                        f"prior validity {final['val_prior_validity']:.1%}")
        training = {**config.as_dict(), "dataset": parameters["dataset"], "stages": history,
                    "skipped": parameters.get("skipped", {}), "val_ids": [data.ids[k] for k in val_rows]}
        save = save_voxel_vae if is_vae else save_voxel_unet
        model_id = save(project, net, parameters["name"], {"voxel": final}, training, parameters["dataset_id"],
                        run_id, complete_run=message)
        store.clear_run_state(project, run_id)
    return TrainResult(model_id, run_id, config.kind, {"voxel": final}, {"voxel": final}, message)


def site_error(found: Structure, truth: Structure) -> float:
    """Mean distance (Å, in the true lattice, periodic) from each true site to the nearest found site
    of its species; the structures must share a composition."""
    distances = []
    for element in truth.composition.elements:
        want = np.array([s.frac_coords for s in truth if s.specie == element])
        got = np.array([s.frac_coords for s in found if s.specie == element])
        delta = want[:, None] - got[None]
        delta -= np.round(delta)
        distances.append(np.linalg.norm(delta @ truth.lattice.matrix, axis=-1).min(axis=1))
    return float(np.concatenate(distances).mean())


@torch.no_grad()
def _final_metrics(unet: VoxelUNet, generator: VoxelGenerator | None, data: VoxelData, val_rows: np.ndarray,
                   tensors: _Tensors, config: VoxelUNetTrainConfig) -> dict[str, float]:
    rows = torch.as_tensor(val_rows, device=tensors.density.device)
    density, lattice = tensors.density[rows], tensors.lattice[rows]
    terms = _unet_terms(unet, density, tensors.species[rows])
    metrics = {"val_segmentation_loss": float(terms["loss"]), "val_voxel_accuracy": float(terms["voxel_accuracy"]),
               "val_occupied_accuracy": float(terms["occupied_accuracy"])}
    truths = [data.structures[k] for k in val_rows]
    coordinates = coordinate_channels(lattice, config.grid).cpu().numpy()
    segmented = unet.species(density).cpu().numpy()
    recovered = [maps_to_structure(density[k].cpu().numpy(), segmented[k], coordinates[k])[0]
                 for k in range(len(truths))]
    metrics["val_composition_recovery"] = float(np.mean([s is not None and s.composition == t.composition
                                                         for s, t in zip(recovered, truths, strict=True)]))
    if generator is None:
        return metrics
    mu, _ = generator.vae.encode(density, coordinate_channels(lattice, config.grid), tensors.condition[rows])
    decoded = generator.decode(mu, tensors.condition[rows])[0]
    lengths = [np.abs(np.array(s.lattice.abc) - np.array(t.lattice.abc)).mean()
               for s, t in zip(decoded, truths, strict=True) if s is not None]
    same = [(s, t) for s, t in zip(decoded, truths, strict=True) if s is not None and s.composition == t.composition]
    metrics["val_decoded_composition_recovery"] = len(same) / len(truths)
    if lengths:  # left out when nothing decoded (never NaN)
        metrics["val_length_mae"] = float(np.mean(lengths))
    if same:
        metrics["val_position_error"] = float(np.mean([site_error(s, t) for s, t in same]))
    draws = torch.Generator(device=mu.device).manual_seed(config.seed + 4)
    z = torch.randn((config.prior_samples, generator.config.latent), generator=draws, device=mu.device)
    deciles = torch.randint(max(generator.config.n_conditions, 1), (config.prior_samples,), generator=draws,
                            device=mu.device)
    samples = generator.decode(z, generator.conditions(deciles))[0]
    metrics["val_prior_validity"] = float(np.mean([s is not None and structurally_valid(s) for s in samples]))
    return metrics


def _rebuild(build, hyperparameters: dict, state: dict, where: str):
    try:
        model = build(hyperparameters)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CrystalStudioError(f"{where}: checkpoint does not match its hyperparameters ({exc})") from None
    return model.eval()


def rebuild_voxel_unet(hyperparameters: dict, targets: list[str], state: dict, where: str) -> VoxelUNet:
    """A voxel U-Net from its stored hyperparameters and state dict (eval mode)."""
    return _rebuild(lambda h: VoxelUNet(VoxelUNetConfig.from_dict(h["unet"])), hyperparameters, state, where)


def rebuild_voxel_vae(hyperparameters: dict, targets: list[str], state: dict, where: str) -> VoxelGenerator:
    """A voxel VAE with its U-Net from its stored hyperparameters and state dict (eval mode)."""
    return _rebuild(lambda h: VoxelGenerator(VoxelVAEConfig.from_dict(h["model"]), VoxelUNetConfig.from_dict(h["unet"]),
                                             float(h["width_scale"])), hyperparameters, state, where)


def save_voxel_unet(project: Project, model: VoxelUNet, name: str, metrics: dict, training: dict | None = None,
                    dataset_id: int | None = None, run_id: int | None = None, complete_run: str | None = None) -> int:
    """Store a voxel U-Net as a model of kind ``voxel_unet``; returns the model id."""
    return store.add_model(project, name=name, kind="voxel_unet", targets=[], normalization={},
                           hyperparameters={"unet": model.config.as_dict(), "training": training or {}},
                           metrics=metrics, checkpoint=state_bytes(model), dataset_id=dataset_id, run_id=run_id,
                           complete_run=complete_run)


def save_voxel_vae(project: Project, model: VoxelGenerator, name: str, metrics: dict, training: dict | None = None,
                   dataset_id: int | None = None, run_id: int | None = None, complete_run: str | None = None) -> int:
    """Store a voxel VAE with its U-Net as a model of kind ``voxel_vae``; returns the model id."""
    training = training or {}
    return store.add_model(project, name=name, kind="voxel_vae", targets=[],
                           normalization={"condition": training.get("condition", "none"),
                                          "decile_edges": model.decile_edges.tolist()},
                           hyperparameters={"model": model.config.as_dict(), "unet": model.unet.config.as_dict(),
                                            "width_scale": model.width_scale, "training": training},
                           metrics=metrics, checkpoint=state_bytes(model), dataset_id=dataset_id, run_id=run_id,
                           complete_run=complete_run)
