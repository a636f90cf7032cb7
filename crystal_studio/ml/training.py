"""Training property predictors: the loop (:class:`EnsembleTrainer`) and the Job around it
(:func:`train_model`, :func:`resume_training`) that reads the dataset from the store and writes the run,
its metrics and the model back.

What a training run does:

1. reads every structure of the dataset with at least one target value, splits the ids with a
   seeded random train/val/test split and stores the split with the run, together with the
   configuration, normalization, seed, package versions and device;
2. builds each crystal's neighbour list once (cached graphs);
3. trains K ensemble members one after the other, each from its own seed, with AdamW, a linear
   warm-up then cosine learning-rate decay, gradient clipping, early stopping on the validation loss
   and bfloat16 autocast on CUDA; the loss is L1 (or MSE/Huber) on per-target standardized values,
   ignoring unknown values;
4. after every epoch records the metrics and saves a resumable checkpoint, so a cancelled or killed
   run continues from its last completed epoch (:func:`resume_training`);
5. keeps each member's best epoch (lowest validation loss), evaluates the ensemble on the test split
   (MAE, RMSE, R² per target) and stores the model and the completed run in one transaction.

A non-finite loss or gradient stops the member cleanly: its best checkpoint so far is kept and the
run message says so (if it happens before the first epoch completes, the run fails with a message).

Metrics recorded per epoch, at step ``member * epochs + epoch`` (epoch counted from 0):
``train_loss``, ``val_loss`` (standardized units), ``lr``, and ``train_mae/TARGET``,
``val_mae/TARGET`` in the target's unit. Progress events have ``step`` = epochs completed over all
members and ``total`` = members × epochs; events after each batch carry ``{"batch_loss": value}``,
events after each epoch carry the epoch's metrics.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.options import option
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.core.properties import unit_of
from crystal_studio.ml.batching import CrystalGraph, build_graphs, collate
from crystal_studio.ml.data import LabelledData, load_labelled, split_ids
from crystal_studio.ml.domain import domain_reference
from crystal_studio.ml.elements import ELEMENTS
from crystal_studio.ml.kinds import KIND_DEFAULTS, PREDICTOR_KINDS, get_kind
from crystal_studio.ml.metrics import metrics_per_target, spread_scale
from crystal_studio.ml.models.gnn import CrystalGNN, GNNConfig
from crystal_studio.ml.predictor import CrystalPredictor, predict_graphs, reopened_run, save_predictor
from crystal_studio.ml.runtime import describe_device, package_versions, resolve_device, set_threads
from crystal_studio.store import models as store
from crystal_studio.store.project import Project

LOSSES = ("l1", "mse", "huber")
STATE_VERSION = 1


class TrainingDiverged(CrystalStudioError):
    """The loss became NaN or infinite before any epoch completed."""


@dataclass
class TrainConfig:
    """Everything that determines a training run (stored with it)."""

    targets: list[str]
    kind: str = option("gnn", "model kind (crystal-studio train --model)", choices=tuple(PREDICTOR_KINDS))
    epochs: int = option(100, "maximum epochs per ensemble member", minimum=1)
    ensemble: int = option(3, "members, each trained from its own seed; their spread is the uncertainty", minimum=1,
                           maximum=store.MAX_ENSEMBLE_MEMBERS)
    seed: int = option(0, "seed of the split, initialization and batch order")
    batch_size: int = option(64, "crystals per batch", minimum=1)
    lr: float = option(1e-3, "peak learning rate (AdamW)", minimum=0.0)
    weight_decay: float = option(1e-4, "AdamW decoupled weight decay", minimum=0.0)
    warmup_epochs: int = option(1, "linear learning-rate warm-up, then cosine decay to 1% at the last epoch",
                                minimum=0)
    patience: int = option(20, "early stopping: epochs without a better validation loss", minimum=1)
    grad_clip: float = option(5.0, "maximum gradient norm", minimum=0.0)
    loss: str = option("l1", "loss on standardized targets", choices=LOSSES)
    split: tuple[float, float, float] = option((0.8, 0.1, 0.1), "train, validation and test shares")
    device: str = option("auto", "auto (GPU when available), cpu or cuda")
    threads: int = option(0, "CPU threads for torch (0: torch's default)", minimum=0)
    mixed_precision: bool = option(True, "bfloat16 autocast on CUDA (ignored on CPU)")
    hidden: int = option(64, "width of the atom states (gnn) or of the head's hidden layers (chgnet_transfer)",
                         minimum=1)
    layers: int = option(3, "message-passing layers (gnn) or hidden layers of the head (chgnet_transfer)",
                         minimum=1)
    cutoff: float = option(5.0, "neighbour cutoff radius (gnn)", unit="Å", minimum=1e-9, maximum=12.0)
    n_gaussians: int = option(40, "Gaussians in the distance expansion (gnn)", minimum=2)

    def validate(self) -> None:
        """Raise CrystalStudioError naming the first setting that cannot work."""
        checks = [
            (self.kind in PREDICTOR_KINDS, f"--model must be one of {', '.join(PREDICTOR_KINDS)} (got '{self.kind}')"),
            (bool(self.targets), "give at least one target"),
            (len(set(self.targets)) == len(self.targets), "targets are repeated"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (1 <= self.ensemble <= store.MAX_ENSEMBLE_MEMBERS,
             f"--ensemble must be from 1 to {store.MAX_ENSEMBLE_MEMBERS}"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.lr > 0, "--lr must be positive"),
            (self.patience >= 1, "--patience must be at least 1"),
            (self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)}"),
            (self.hidden >= 1 and self.layers >= 1 and self.n_gaussians >= 2, "model sizes must be positive"),
            (0 < self.cutoff <= 12, "--cutoff must be in (0, 12] Å"),
            (len(self.split) == 3 and all(f >= 0 for f in self.split), "split needs three non-negative shares"),
        ]
        for ok, message in checks:
            if not ok:
                raise CrystalStudioError(message)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_kind(cls, kind: str, targets: list[str], **settings) -> TrainConfig:
        """A config for ``kind``: the kind's own defaults (:data:`~crystal_studio.ml.kinds.KIND_DEFAULTS`),
        overridden by the ``settings`` that are not None."""
        chosen = {**KIND_DEFAULTS.get(kind, {}), **{k: v for k, v in settings.items() if v is not None}}
        return cls(targets=targets, kind=kind, **chosen)

    @classmethod
    def from_dict(cls, doc: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        doc = {k: v for k, v in doc.items() if k in names}
        if "split" in doc:
            doc["split"] = tuple(doc["split"])
        return cls(**doc)


@dataclass
class TrainResult:
    """What a finished training run produced."""

    model_id: int
    run_id: int
    kind: str
    metrics: dict  # test split: target -> {"mae", "rmse", "r2", "n"}
    val_metrics: dict
    message: str

    def as_json(self) -> dict:
        return {"model_id": self.model_id, "kind": self.kind, "run_id": self.run_id, "metrics": self.metrics,
                "val_metrics": self.val_metrics, "message": self.message}


@dataclass
class _Member:
    """Training state of one ensemble member (everything a resume needs)."""

    index: int
    model: CrystalGNN
    optimizer: torch.optim.Optimizer
    epoch: int = 0  # epochs completed
    best_val: float = math.inf
    best_epoch: int = -1
    best: dict | None = None  # state dict of the best epoch
    bad_epochs: int = 0
    stopped: str = ""  # why it stopped before the last epoch ("" while it runs)
    info: dict = field(default_factory=dict)


class _NonFinite(Exception):
    pass


def _snapshot(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _masked_loss(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    known = torch.isfinite(target)
    diff = pred.float()[known] - target[known]
    if kind == "mse":
        return diff.square().mean()
    if kind == "huber":
        return F.huber_loss(diff, torch.zeros_like(diff), delta=1.0)
    return diff.abs().mean()


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 1% at step ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))


class EnsembleTrainer:
    """The training loop for K members on cached graphs; knows nothing of the store.

    ``mean``/``std`` are the per-target normalization (physical units). ``on_epoch(step, metrics)`` is
    called after every epoch once the member's state (see :meth:`checkpoint`) includes it.
    """

    def __init__(self, config: TrainConfig, model_config: GNNConfig, train: list[CrystalGraph],
                 val: list[CrystalGraph], mean: Tensor, std: Tensor, device: torch.device):
        self.config = config
        self.model_config = model_config
        self.train = train
        self.val = val
        self.device = device
        self.mean = mean.to(device)
        self.std = std.to(device)
        self.done: list[dict] = []  # best state dicts of finished members
        self.infos: list[dict] = []
        self.member: _Member | None = None
        self.batches_per_epoch = max(1, math.ceil(len(train) / config.batch_size))

    # ------------------------------------------------------------------ state

    def _new_member(self, index: int) -> _Member:
        with torch.random.fork_rng(devices=[]):  # seeded initialization without touching the global RNG
            torch.manual_seed(self.config.seed * 1000 + index)
            model = CrystalGNN(self.model_config).to(self.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        return _Member(index, model, optimizer)

    def checkpoint(self) -> bytes:
        """Serialized resumable state: finished members and the current member's full state."""
        m = self.member
        state = {"version": STATE_VERSION, "done": self.done, "infos": self.infos, "member": m.index,
                 "current": {"model": m.model.state_dict(), "optimizer": m.optimizer.state_dict(), "epoch": m.epoch,
                             "best_val": m.best_val, "best_epoch": m.best_epoch, "best": m.best,
                             "bad_epochs": m.bad_epochs, "stopped": m.stopped}}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def restore(self, state: dict) -> None:
        """Continue from a :meth:`checkpoint` (loaded with ``weights_only=True``)."""
        if state.get("version") != STATE_VERSION:
            raise CrystalStudioError("the saved training state is from another version; start a new run")
        self.done, self.infos = list(state["done"]), list(state["infos"])
        cur = state["current"]
        member = self._new_member(int(state["member"]))
        member.model.load_state_dict(cur["model"])
        member.optimizer.load_state_dict(cur["optimizer"])
        member.epoch, member.best_val, member.best_epoch = int(cur["epoch"]), float(cur["best_val"]), int(
            cur["best_epoch"])
        member.best, member.bad_epochs, member.stopped = cur["best"], int(cur["bad_epochs"]), str(cur["stopped"])
        self.member = member

    @property
    def last_step(self) -> int:
        """Metrics step of the last completed epoch (-1 before the first)."""
        if self.member is None:
            return -1
        return self.member.index * self.config.epochs + self.member.epoch - 1

    def position(self) -> str:
        """Where training stands, for messages."""
        if self.member is None:
            return f"{len(self.done)} of {self.config.ensemble} member(s) finished"
        return (f"member {self.member.index + 1} of {self.config.ensemble}, "
                f"{self.member.epoch} epoch(s) completed")

    # ------------------------------------------------------------------ loop

    def fit(self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
            on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> tuple[list[dict], list[dict]]:
        """Train (or finish training) every member; returns their best state dicts and summaries."""
        cancel = cancel or CancelToken()
        first = self.member.index if self.member is not None else 0
        for index in range(first, self.config.ensemble):
            if self.member is None or self.member.index != index:
                self.member = self._new_member(index)
            self._fit_member(self.member, progress, cancel, on_epoch)
            m = self.member
            if m.best is not None:
                m.model.load_state_dict(m.best)
            self.done.append(_snapshot(m.model))
            self.infos.append({"member": index, "epochs": m.epoch, "best_epoch": m.best_epoch + 1,
                               "best_val_loss": m.best_val, "stopped": m.stopped})
            self.member = None
        return self.done, self.infos

    def _fit_member(self, m: _Member, progress: ProgressCallback, cancel: CancelToken,
                    on_epoch: Callable[[int, dict[str, float]], None] | None) -> None:
        cfg = self.config
        total = cfg.ensemble * cfg.epochs
        while m.epoch < cfg.epochs and not m.stopped:
            try:
                metrics = self._train_epoch(m, progress, cancel)
                val_loss, val_mae = self._validate(m.model)
                if not math.isfinite(val_loss):
                    raise _NonFinite("non-finite validation loss")
            except _NonFinite as exc:
                self._stop_non_finite(m, str(exc))
                break
            metrics["val_loss"] = val_loss
            metrics.update({f"val_mae/{t}": v for t, v in val_mae.items()})
            if val_loss < m.best_val:
                m.best_val, m.best_epoch, m.best, m.bad_epochs = val_loss, m.epoch, _snapshot(m.model), 0
            else:
                m.bad_epochs += 1
            m.epoch += 1
            if m.bad_epochs >= cfg.patience and m.epoch < cfg.epochs:
                m.stopped = f"early stop after epoch {m.epoch} (no better validation loss for {cfg.patience} epochs)"
            if on_epoch is not None:
                on_epoch(self.last_step, metrics)
            progress(ProgressEvent(m.index * cfg.epochs + m.epoch, total,
                                   f"member {m.index + 1}/{cfg.ensemble} epoch {m.epoch}: val loss {val_loss:.4g}",
                                   metrics))

    def _stop_non_finite(self, m: _Member, what: str) -> None:
        if m.best is None:
            raise TrainingDiverged(f"training diverged in the first epoch of member {m.index + 1} ({what}); "
                                   "try a lower --lr")
        m.model.load_state_dict(m.best)
        m.stopped = (f"stopped in epoch {m.epoch + 1} ({what}); kept the best checkpoint "
                     f"(epoch {m.best_epoch + 1})")

    def epoch_batches(self, member: int, epoch: int) -> list[list[int]]:
        """Indices into the training graphs of each batch of one epoch: a seeded shuffle (a function of
        seed, member and epoch only) cut into ``batch_size`` crystals; every graph appears exactly once.

        Batches are not packed by size: on a CPU the step time is proportional to the edge count, so
        packing gains nothing there, and it would change the trajectory of a seeded run."""
        size = self.config.batch_size
        generator = torch.Generator().manual_seed((self.config.seed * 1_000_003 + member) * 100_003 + epoch)
        order = torch.randperm(len(self.train), generator=generator).tolist()
        return [order[start:start + size] for start in range(0, len(order), size)] or [[]]

    def _train_epoch(self, m: _Member, progress: ProgressCallback, cancel: CancelToken) -> dict[str, float]:
        cfg = self.config
        m.model.train()
        steps_total = cfg.epochs * self.batches_per_epoch
        warmup = min(cfg.warmup_epochs * self.batches_per_epoch, steps_total // 2)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                    and cfg.mixed_precision else contextlib.nullcontext())
        n_targets = len(cfg.targets)
        loss_sum, n_seen = 0.0, 0
        abs_sum = torch.zeros(n_targets, device=self.device, dtype=torch.float64)
        known_sum = torch.zeros(n_targets, device=self.device, dtype=torch.float64)
        for b, indices in enumerate(self.epoch_batches(m.index, m.epoch)):
            cancel.check()
            batch = collate([self.train[i] for i in indices])
            batch = batch.to(self.device)
            target = (batch.y - self.mean) / self.std
            lr = cfg.lr * _lr_factor(m.epoch * self.batches_per_epoch + b, steps_total, warmup)
            for group in m.optimizer.param_groups:
                group["lr"] = lr
            with autocast:
                pred = m.model(batch)
            loss = _masked_loss(pred, target, cfg.loss)
            if not torch.isfinite(loss):
                raise _NonFinite(f"non-finite loss in batch {b + 1}")
            m.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(m.model.parameters(), cfg.grad_clip)
            if not torch.isfinite(grad_norm):
                raise _NonFinite(f"non-finite gradient in batch {b + 1}")
            m.optimizer.step()
            n = batch.num_crystals
            loss_value = loss.detach().item()
            loss_sum += loss_value * n
            n_seen += n
            with torch.no_grad():
                known = torch.isfinite(batch.y)
                err = (pred.float() * self.std + self.mean - batch.y).abs()
                abs_sum += torch.where(known, err, 0.0).sum(dim=0).double()
                known_sum += known.sum(dim=0).double()
            step = m.index * cfg.epochs + m.epoch
            progress(ProgressEvent(step, cfg.ensemble * cfg.epochs,
                                   f"member {m.index + 1}/{cfg.ensemble} epoch {m.epoch + 1} batch {b + 1}/"
                                   f"{self.batches_per_epoch}", {"batch_loss": loss_value},
                                   position=step + (b + 1) / self.batches_per_epoch))
        metrics = {"train_loss": loss_sum / max(n_seen, 1), "lr": lr}
        mae = (abs_sum / known_sum.clamp(min=1)).tolist()
        metrics.update({f"train_mae/{t}": v for t, v, k in zip(cfg.targets, mae, known_sum.tolist(), strict=True) if k})
        return metrics

    @torch.no_grad()
    def _validate(self, model: CrystalGNN) -> tuple[float, dict[str, float]]:
        """Validation loss (standardized units) and MAE per target (physical units)."""
        model.eval()
        preds, ys = [], []
        for start in range(0, len(self.val), 2 * self.config.batch_size):
            batch = collate(self.val[start:start + 2 * self.config.batch_size]).to(self.device)
            preds.append(model(batch).float())
            ys.append(batch.y)
        pred, y = torch.cat(preds), torch.cat(ys)
        loss = float(_masked_loss(pred, (y - self.mean) / self.std, self.config.loss))
        known = torch.isfinite(y)
        err = torch.where(known, (pred * self.std + self.mean - y).abs(), 0.0)
        mae = {t: float(err[:, k].sum() / known[:, k].sum()) for k, t in enumerate(self.config.targets)
               if known[:, k].any()}
        return loss, mae


# --------------------------------------------------------------------------------------------------
# The Job: store in, store out
# --------------------------------------------------------------------------------------------------


def target_normalization(y: np.ndarray, targets: list[str]) -> tuple[list[float], list[float]]:
    """Per-target mean and standard deviation (physical units) of the known values of (n, T) ``y``;
    a constant target gets a deviation of 1."""
    means, stds = [], []
    for k, target in enumerate(targets):
        values = y[:, k][np.isfinite(y[:, k])]
        if values.size == 0:
            raise CrystalStudioError(f"no structure of the training split has a value for '{target}'")
        std = float(values.std())
        means.append(float(values.mean()))
        stds.append(std if std > 1e-8 else 1.0)
    return means, stds


def model_config_for(config: TrainConfig, train: list[CrystalGraph]) -> GNNConfig:
    """The architecture of ``config``, with the message normalization set to the mean neighbour count
    of the training graphs."""
    n_atoms = sum(g.n_atoms for g in train)
    n_edges = sum(int(g.center.shape[0]) for g in train)
    return GNNConfig(n_targets=len(config.targets), hidden=config.hidden, layers=config.layers, cutoff=config.cutoff,
                     n_gaussians=config.n_gaussians, avg_neighbors=max(1.0, n_edges / max(n_atoms, 1)))


def assemble_predictor(model_config: GNNConfig, targets: list[str], members: list[dict], mean: list[float],
                       std: list[float]) -> CrystalPredictor:
    """A predictor from the members' state dicts and the target normalization."""
    predictor = CrystalPredictor(model_config, targets, len(members))
    for member, member_state in zip(predictor.members, members, strict=True):
        member.load_state_dict(member_state)
    predictor.set_normalization(mean, std)
    return predictor.eval()


def _graphs(data: LabelledData, cutoff: float, what: str, progress: ProgressCallback,
            cancel: CancelToken) -> list[CrystalGraph]:
    def relay(event: ProgressEvent) -> None:
        progress(ProgressEvent(event.step, event.total, f"{event.message} ({what})"))

    return build_graphs(data.structures, cutoff, data.y, progress=relay, cancel=cancel)


def train_model(project: Project, dataset: str, config: TrainConfig, name: str | None = None,
                progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> TrainResult:
    """Train a model of kind ``config.kind`` predicting ``config.targets`` on ``dataset`` and store it
    (the kind's module does the work; see :mod:`crystal_studio.ml.kinds`)."""
    config.validate()
    return get_kind(config.kind).load().train(project, dataset, config, name, progress, cancel or CancelToken())


def train_gnn(project: Project, dataset: str, config: TrainConfig, name: str | None = None,
              progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> TrainResult:
    """Train a GNN ensemble of ``config.targets`` on ``dataset`` and store it; see the module docstring."""
    cancel = cancel or CancelToken()
    device = resolve_device(config.device)
    set_threads(config.threads)
    dataset_id = project.dataset_id(dataset)
    data = load_labelled(project, dataset, config.targets, progress, cancel)
    if not data.ids:
        have = sorted(next((d.properties for d in project.datasets() if d.name == dataset), {}))
        raise CrystalStudioError(f"no structure in '{dataset}' has a value for {', '.join(config.targets)} "
                                 f"(its properties: {', '.join(have) or 'none'})")
    split = split_ids(data.ids, config.split, config.seed)
    parts = {key: data.subset(ids) for key, ids in split.items()}
    mean, std = target_normalization(parts["train"].y, config.targets)
    graphs = {key: _graphs(part, config.cutoff, key, progress, cancel) for key, part in parts.items()}
    model_config = model_config_for(config, graphs["train"])
    parameters = {
        "dataset": dataset, "dataset_id": dataset_id, "name": name or _default_name(dataset, config),
        "config": config.as_dict(), "model": model_config.as_dict(),
        "normalization": {"mean": mean, "std": std}, "split": split, "skipped": dict(data.skipped),
    }
    run_id = store.create_run(project, "train", parameters, config.seed, describe_device(device), package_versions())
    return _execute(project, run_id, parameters, config, model_config, graphs, device, None, progress, cancel)


def resume_training(project: Project, run_id: int, progress: ProgressCallback = no_progress,
                    cancel: CancelToken | None = None, device: str | None = None,
                    threads: int | None = None) -> TrainResult:
    """Continue a cancelled, failed or killed training run from its last completed epoch (from the
    start if it never completed one), with its stored configuration and split."""
    cancel = cancel or CancelToken()
    run = store.get_run(project, run_id)
    if run.kind != "train":
        raise CrystalStudioError(f"run {run_id} is a '{run.kind}' run, not a training run")
    if run.status == "completed":
        raise CrystalStudioError(f"run {run_id} already completed; nothing to resume")
    from crystal_studio.ml.kinds import config_class

    config = config_class(run.parameters["config"].get("kind", "gnn")).from_dict(run.parameters["config"])
    if device is not None:
        config.device = device
    if threads is not None:
        config.threads = threads
    return get_kind(config.kind).load().resume(project, run_id, config, progress, cancel)


def resume_gnn(project: Project, run_id: int, config: TrainConfig, progress: ProgressCallback = no_progress,
               cancel: CancelToken | None = None) -> TrainResult:
    """Continue GNN training run ``run_id`` with ``config`` (its stored one, device and threads as chosen)."""
    cancel = cancel or CancelToken()
    run, target_device, state = reopened_run(project, run_id, config)
    parameters = run.parameters
    data = load_labelled(project, parameters["dataset"], config.targets, progress, cancel)
    graphs = {key: _graphs(data.subset(ids), config.cutoff, key, progress, cancel)
              for key, ids in parameters["split"].items()}
    model_config = GNNConfig.from_dict(parameters["model"])
    store.update_run(project, run_id, status="running", message="", device=describe_device(target_device))
    return _execute(project, run_id, parameters, config, model_config, graphs, target_device, state, progress,
                    cancel)


def _default_name(dataset: str, config: TrainConfig) -> str:
    members = f" ×{config.ensemble}" if config.ensemble > 1 else ""
    return f"gnn{members} {'+'.join(config.targets)} on {dataset}"


def _execute(project: Project, run_id: int, parameters: dict, config: TrainConfig, model_config: GNNConfig,
             graphs: dict[str, list[CrystalGraph]], device: torch.device, state: dict | None,
             progress: ProgressCallback, cancel: CancelToken) -> TrainResult:
    norm = parameters["normalization"]
    mean = torch.tensor(norm["mean"], dtype=torch.float32)
    std = torch.tensor(norm["std"], dtype=torch.float32)
    trainer = EnsembleTrainer(config, model_config, graphs["train"], graphs["val"], mean, std, device)

    def cancelled() -> str:
        return f"cancelled at {trainer.position()}; resume with: crystal-studio train PROJECT --resume {run_id}"

    store.announce_run(run_id, progress)
    with store.guarded_run(project, run_id, cancelled):
        if state is not None:
            trainer.restore(state)
        store.delete_metrics_after(project, run_id, trainer.last_step)

        def on_epoch(step: int, metrics: dict[str, float]) -> None:
            store.record_metrics(project, run_id, step, metrics)
            store.save_run_state(project, run_id, trainer.checkpoint())

        members, infos = trainer.fit(progress, cancel, on_epoch)
        predictor = assemble_predictor(model_config, config.targets, members, norm["mean"], norm["std"]).to(device)
        progress(ProgressEvent(len(members) * config.epochs, len(members) * config.epochs, "evaluating on test"))
        mean, std = predict_graphs(predictor, graphs["val"], 2 * config.batch_size)
        val_y = torch.stack([g.y for g in graphs["val"]]).double().numpy()
        predictor.spread_scale.copy_(torch.as_tensor(spread_scale(val_y, mean, std)))
        metrics = {key: graph_metrics(predictor, graphs[key], 2 * config.batch_size) for key in ("val", "test")}
        notes = [f"member {i['member'] + 1}: {i['stopped']}" for i in infos if i["stopped"]]
        sizes = {key: len(g) for key, g in graphs.items()}
        message = (f"trained {len(members)} member(s) on {sizes['train']} structures "
                   f"(val {sizes['val']}, test {sizes['test']})" + "".join(f"; {n}" for n in notes))
        training = {**config.as_dict(), "dataset": parameters["dataset"], "split_sizes": sizes, "members": infos,
                    "units": {t: unit_of(t) for t in config.targets}, "val_metrics": metrics["val"],
                    "spread_scale": predictor.spread_scale.tolist()}
        _, test_std = predict_graphs(predictor, graphs["test"], 2 * config.batch_size)  # calibrated now
        domain = domain_reference(np.concatenate([std * predictor.spread_scale.cpu().numpy(), test_std]), norm["std"],
                                  {ELEMENTS[int(t)] for g in graphs["train"] for t in g.types.unique()},
                                  [abs(float(torch.linalg.det(g.lattice.double()))) / g.n_atoms for g in graphs["train"]])
        if domain is not None:  # what out-of-domain flags compare against (ml/domain.py)
            training["domain"] = domain
        model_id = save_predictor(project, predictor, parameters["name"], metrics["test"], training,
                                  parameters["dataset_id"], run_id, complete_run=message)
        store.clear_run_state(project, run_id)
    return TrainResult(model_id, run_id, "gnn", metrics["test"], metrics["val"], message)


def graph_metrics(predictor: CrystalPredictor, graphs: list[CrystalGraph], batch_size: int = 128) -> dict:
    """Metrics per target of the ensemble mean on labelled cached graphs (with the calibration of the
    spread for ensembles)."""
    mean, std = predict_graphs(predictor, graphs, batch_size)
    y = torch.stack([g.y for g in graphs]).double().numpy()
    return metrics_per_target(predictor.targets, y, mean, std)
