"""Training the CHGNet-transfer kind (:mod:`crystal_studio.ml.models.chgnet_transfer`) as a stored run.

What a run does:

1. reads the labelled structures and makes the same seeded train/val/test split as the GNN (same
   seed and shares give the same split, so the two kinds are compared on the same test structures);
2. computes CHGNet's energy and crystal feature for every structure once (the slow part, about 25
   structures/s per CPU core) and saves them in the run's resumable state;
3. fits the linear baseline (ridge regression on atom fractions and CHGNet energy) on the training split;
4. trains K MLP corrections from their own seeds with AdamW and cosine decay, early stopping on the
   validation loss; each member's state is saved when it finishes, so a killed run resumes at the next
   member with its features already computed;
5. evaluates the ensemble on the validation and test splits (with the calibration of the spread) and
   stores the model and the completed run in one transaction.

Metrics per epoch use the GNN's names and steps (``train_loss``, ``val_loss``, ``lr``,
``val_mae/TARGET``, at step ``member * epochs + epoch``), so the Training panel plots both kinds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.core.properties import unit_of
from crystal_studio.ml.data import load_labelled, split_ids
from crystal_studio.ml.metrics import metrics_per_target, spread_scale
from crystal_studio.ml.models.chgnet_transfer import TransferConfig, TransferPredictor, _mlp, prepare_inputs
from crystal_studio.ml.predictor import reopened_run, saved_bytes, state_bytes
from crystal_studio.ml.runtime import describe_device, package_versions, resolve_device, set_threads
from crystal_studio.store import models as store
from crystal_studio.store.project import Project

KIND = "chgnet_transfer"
STATE_VERSION = 1
CHGNET_BATCH = 32  # structures per CHGNet forward pass (larger batches are not faster on a CPU)
RIDGE = 1e-4  # ridge penalty of the linear baseline (keeps elements absent from training at 0)


def fit_baseline(predictor: TransferPredictor, fractions: torch.Tensor, energy: torch.Tensor,
                 y: torch.Tensor) -> None:
    """Ridge-regress each target on [fractions, CHGNet energy, 1] over its known training values."""
    a = predictor.baseline_inputs(fractions, energy).double()
    coefficients = torch.zeros_like(predictor.baseline, dtype=torch.float64)
    for k in range(y.shape[1]):
        known = torch.isfinite(y[:, k])
        ak, yk = a[known], y[known, k].double()
        gram = ak.T @ ak + RIDGE * torch.eye(a.shape[1], dtype=torch.float64)
        coefficients[:, k] = torch.linalg.solve(gram, ak.T @ yk)
    predictor.baseline.copy_(coefficients.float())


def _masked_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    known = torch.isfinite(target)
    return F.l1_loss(pred[known], target[known])


class _HeadTrainer:
    """Trains the MLP corrections of a :class:`TransferPredictor` on prepared inputs."""

    def __init__(self, predictor: TransferPredictor, config, inputs: dict, ys: dict):
        self.predictor = predictor
        self.config = config
        self.x = {k: predictor.standardized(f) for k, (_, f) in inputs.items()}
        self.residual = {k: (ys[k] - predictor.baseline_inputs(fr, f[:, 0]) @ predictor.baseline)
                         / predictor.residual_std for k, (fr, f) in inputs.items()}

    def fit_member(self, index: int, progress: ProgressCallback, cancel: CancelToken,
                   on_epoch) -> tuple[dict, dict]:
        """Train member ``index``; returns its best state dict and a summary."""
        cfg, n = self.config, len(self.x["train"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed * 1000 + index)
            model = _mlp(self.predictor.config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + index)
        batches = max(1, math.ceil(n / cfg.batch_size))
        best, best_val, best_epoch, bad, stopped = None, math.inf, -1, 0, ""
        for epoch in range(cfg.epochs):
            cancel.check()
            model.train()
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for b in range(batches):
                rows = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                step = epoch * batches + b
                lr = cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / (cfg.epochs * batches))))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = _masked_l1(model(self.x["train"][rows]), self.residual["train"][rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                total += loss.item() * len(rows)
            model.eval()
            with torch.no_grad():
                val_pred = model(self.x["val"])
            val_loss = float(_masked_l1(val_pred, self.residual["val"]))
            err = ((val_pred - self.residual["val"]) * self.predictor.residual_std).abs()
            known = torch.isfinite(err)
            metrics = {"train_loss": total / n, "val_loss": val_loss, "lr": lr}
            for k, target in enumerate(cfg.targets):
                if known[:, k].any():
                    metrics[f"val_mae/{target}"] = float(err[known[:, k], k].mean())
            if val_loss < best_val:
                best, best_val, best_epoch, bad = {k: v.clone() for k, v in model.state_dict().items()}, val_loss, epoch, 0
            else:
                bad += 1
            on_epoch(index * cfg.epochs + epoch, metrics)
            progress(ProgressEvent(index * cfg.epochs + epoch + 1, cfg.ensemble * cfg.epochs,
                                   f"member {index + 1}/{cfg.ensemble} epoch {epoch + 1}: val loss {val_loss:.4g}",
                                   metrics))
            if bad >= cfg.patience and epoch + 1 < cfg.epochs:
                stopped = f"early stop after epoch {epoch + 1}"
                break
        info = {"member": index, "epochs": epoch + 1, "best_epoch": best_epoch + 1, "best_val_loss": best_val,
                "stopped": stopped}
        return best, info



def train_transfer(project: Project, dataset: str, config, name: str | None = None,
                   progress: ProgressCallback = no_progress, cancel: CancelToken | None = None):
    """Train a CHGNet-transfer ensemble of ``config.targets`` (a
    :class:`~crystal_studio.ml.training.TrainConfig`) on ``dataset`` and store it; see the module docstring."""
    cancel = cancel or CancelToken()
    config.validate()
    device = resolve_device(config.device)
    set_threads(config.threads)
    dataset_id = project.dataset_id(dataset)
    data = load_labelled(project, dataset, config.targets, progress, cancel)
    if not data.ids:
        raise CrystalStudioError(f"no structure in '{dataset}' has a value for {', '.join(config.targets)}")
    split = split_ids(data.ids, config.split, config.seed)
    members = f" ×{config.ensemble}" if config.ensemble > 1 else ""
    parameters = {"dataset": dataset, "dataset_id": dataset_id, "kind": KIND, "config": config.as_dict(),
                  "name": name or f"chgnet-transfer{members} {'+'.join(config.targets)} on {dataset}",
                  "split": split, "skipped": dict(data.skipped)}
    run_id = store.create_run(project, "train", parameters, config.seed, describe_device(device), package_versions())
    return _execute(project, run_id, parameters, config, data, None, device, progress, cancel)


def resume_transfer(project: Project, run_id: int, config, progress: ProgressCallback = no_progress,
                    cancel: CancelToken | None = None):
    """Continue an interrupted CHGNet-transfer run: features and finished members come from its state."""
    cancel = cancel or CancelToken()
    run, device, state = reopened_run(project, run_id, config)
    data = load_labelled(project, run.parameters["dataset"], config.targets, progress, cancel)
    store.update_run(project, run_id, status="running", message="", device=describe_device(device))
    return _execute(project, run_id, run.parameters, config, data, state, device, progress, cancel)


def _execute(project: Project, run_id: int, parameters: dict, config, data, state: dict | None,
             device: torch.device, progress: ProgressCallback, cancel: CancelToken):
    from crystal_studio.ml.training import TrainResult

    done: list[dict] = []
    infos: list[dict] = []

    def cancelled() -> str:
        return (f"cancelled after {len(done)} of {config.ensemble} member(s); "
                f"resume with: crystal-studio train PROJECT --resume {run_id}")

    store.announce_run(run_id, progress)
    with store.guarded_run(project, run_id, cancelled):
        if state is not None and state.get("version") != STATE_VERSION:
            raise CrystalStudioError("the saved training state is from another version; start a new run")
        parts = {key: data.subset(ids) for key, ids in parameters["split"].items()}
        if state is not None:
            inputs = {key: (state["inputs"][key]["fractions"], state["inputs"][key]["features"]) for key in parts}
            done, infos = list(state["done"]), list(state["infos"])
        else:
            inputs = {}
            for key, part in parts.items():
                def relay(event: ProgressEvent, key=key) -> None:
                    progress(ProgressEvent(event.step, event.total, f"{event.message} ({key})"))

                fractions, features = prepare_inputs(part.structures, CHGNET_BATCH, str(device), relay, cancel)
                inputs[key] = (torch.from_numpy(fractions), torch.from_numpy(features))
        ys = {key: torch.as_tensor(part.y, dtype=torch.float32) for key, part in parts.items()}

        def save_state() -> None:
            store.save_run_state(project, run_id, saved_bytes({
                "version": STATE_VERSION, "done": done, "infos": infos,
                "inputs": {k: {"fractions": f, "features": x} for k, (f, x) in inputs.items()}}))

        save_state()
        model_config = TransferConfig(n_targets=len(config.targets), n_features=int(inputs["train"][1].shape[1]),
                                      hidden=config.hidden, layers=config.layers)
        predictor = TransferPredictor(model_config, config.targets, config.ensemble)
        train_fractions, train_features = inputs["train"]
        fit_baseline(predictor, train_fractions, train_features[:, 0], ys["train"])
        predictor.feature_mean.copy_(train_features.mean(dim=0))
        predictor.feature_std.copy_(train_features.std(dim=0).clamp(min=1e-6))
        residual = ys["train"] - predictor.baseline_inputs(train_fractions, train_features[:, 0]) @ predictor.baseline
        predictor.residual_std.copy_(torch.stack([
            residual[torch.isfinite(residual[:, k]), k].std().clamp(min=1e-6) for k in range(residual.shape[1])]))
        store.delete_metrics_after(project, run_id, len(done) * config.epochs - 1)
        trainer = _HeadTrainer(predictor, config, inputs, ys)
        for index in range(len(done), config.ensemble):
            best, info = trainer.fit_member(index, progress, cancel,
                                            lambda step, metrics: store.record_metrics(project, run_id, step, metrics))
            done.append(best)
            infos.append(info)
            save_state()
        for member, member_state in zip(predictor.members, done, strict=True):
            member.load_state_dict(member_state)
        predictor.eval()
        with torch.no_grad():
            mean, std = predictor(*inputs["val"])
        predictor.spread_scale.copy_(torch.as_tensor(
            spread_scale(ys["val"].double().numpy(), mean.double().numpy(), std.double().numpy())))
        metrics = {}
        with torch.no_grad():
            for key in ("val", "test"):
                mean, std = predictor(*inputs[key])
                metrics[key] = metrics_per_target(config.targets, ys[key].double().numpy(), mean.double().numpy(),
                                                  std.double().numpy())
        sizes = {key: len(part.ids) for key, part in parts.items()}
        message = (f"trained {len(done)} CHGNet-transfer member(s) on {sizes['train']} structures "
                   f"(val {sizes['val']}, test {sizes['test']})")
        training = {**config.as_dict(), "dataset": parameters["dataset"], "split_sizes": sizes, "members": infos,
                    "units": {t: unit_of(t) for t in config.targets}, "val_metrics": metrics["val"],
                    "spread_scale": predictor.spread_scale.tolist()}
        model_id = save_transfer(project, predictor, parameters["name"], metrics["test"], training,
                                 parameters["dataset_id"], run_id, complete_run=message)
        store.clear_run_state(project, run_id)
    return TrainResult(model_id, run_id, KIND, metrics["test"], metrics["val"], message)


def rebuild_transfer(hyperparameters: dict, targets: list[str], state: dict, where: str) -> TransferPredictor:
    """A CHGNet-transfer predictor from its stored hyperparameters and state dict (eval mode)."""
    try:
        predictor = TransferPredictor(TransferConfig.from_dict(hyperparameters["model"]), targets,
                                      int(hyperparameters["members"]))
        predictor.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CrystalStudioError(f"{where}: checkpoint does not match its hyperparameters ({exc})") from None
    return predictor.eval()


def save_transfer(project: Project, predictor: TransferPredictor, name: str, metrics: dict,
                  training: dict | None = None, dataset_id: int | None = None, run_id: int | None = None,
                  complete_run: str | None = None) -> int:
    """Store a transfer predictor as a model of kind ``chgnet_transfer``; returns the model id."""
    normalization = {t: {"unit": unit_of(t)} for t in predictor.targets}
    hyperparameters = {"model": predictor.config.as_dict(), "members": len(predictor.members),
                       "training": training or {}}
    return store.add_model(project, name=name, kind=KIND, targets=predictor.targets,
                           hyperparameters=hyperparameters, normalization=normalization, metrics=metrics,
                           checkpoint=state_bytes(predictor), dataset_id=dataset_id, run_id=run_id,
                           complete_run=complete_run)
