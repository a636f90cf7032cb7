"""Training jobs against a real project store: split, metrics, checkpoints, cancel and resume, the
NaN guard, and reproducibility records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crystal_studio.core.errors import Cancelled, CrystalStudioError, NotFoundError
from crystal_studio.core.io import read_structures
from crystal_studio.core.progress import CancelToken
from crystal_studio.ml import training
from crystal_studio.ml.predictor import (
    evaluate_structures,
    export_model_file,
    import_model_file,
    load_predictor,
    predict_structures,
)
from crystal_studio.ml.training import TrainConfig, TrainingDiverged, resume_training, train_model
from crystal_studio.store import models as store
from tests.ml_synthetic import synthetic_crystals, write_csv

TARGETS = ["formation_energy_per_atom", "band_gap"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def data_project(project, tmp_path):
    records, issues = read_structures([write_csv(tmp_path / "syn.csv", synthetic_crystals(30))])
    assert not issues
    project.add_records("syn", records)
    return project


def config(**changes) -> TrainConfig:
    base = dict(targets=TARGETS, epochs=4, ensemble=1, seed=3, batch_size=8, lr=3e-3, hidden=12, layers=2,
                cutoff=4.5, n_gaussians=10, device="cpu", patience=50)
    base.update(changes)
    return TrainConfig(**base)


def test_training_stores_model_run_split_and_metrics(data_project):
    events = []
    result = train_model(data_project, "syn", config(), progress=events.append)

    run = store.get_run(data_project, result.run_id)
    assert run.status == "completed" and run.kind == "train" and run.seed == 3
    assert run.device.startswith("cpu") and {"torch", "numpy", "pymatgen", "python"} <= set(run.versions)
    split = run.parameters["split"]
    assert sorted(split["train"] + split["val"] + split["test"]) == data_project.ids()
    assert len(split["val"]) == len(split["test"]) == 3
    assert run.parameters["config"]["lr"] == 3e-3

    curves = store.run_metrics(data_project, result.run_id)
    assert [s for s, _ in curves["val_loss"]] == [0, 1, 2, 3]
    assert {"train_loss", "lr", "train_mae/band_gap", "val_mae/formation_energy_per_atom"} <= set(curves)
    assert curves["train_loss"][-1][1] < curves["train_loss"][0][1]
    assert any("batch_loss" in e.metrics for e in events) and events[-1].message == "evaluating on test"

    model = store.get_model(data_project, result.model_id)
    assert model.run_id == result.run_id and model.dataset == "syn" and model.targets == TARGETS
    assert set(model.metrics) == set(TARGETS) and set(model.metrics["band_gap"]) >= {"mae", "rmse", "r2"}
    assert model.normalization["band_gap"]["unit"] == "eV"
    assert not store.run_state_path(data_project, result.run_id).exists()

    _, predictor = load_predictor(data_project, result.model_id)
    structures = [s for _, s in data_project.iter_structures(_query(split["test"]))]
    mean, std = predict_structures(predictor, structures)
    assert mean.shape == std.shape == (3, 2) and np.isfinite(mean).all()
    props = [row["properties"] for row, _ in data_project.iter_structures(_query(split["test"]))]
    n, metrics = evaluate_structures(predictor, structures, props)
    assert n == 3
    assert metrics["band_gap"]["mae"] == pytest.approx(result.metrics["band_gap"]["mae"], rel=1e-4)


def _query(ids):
    from crystal_studio.store.project import StructureQuery

    return StructureQuery(ids=ids)


def test_resume_after_cancel_gives_the_uninterrupted_result(data_project):
    cfg = config(ensemble=2, epochs=3)
    reference = train_model(data_project, "syn", cfg)

    cancel = CancelToken()

    def cancel_in_second_member(event):
        if event.metrics.get("val_loss") is not None and event.step == 4:  # member 2, epoch 1 done
            cancel.cancel()

    with pytest.raises(Cancelled):
        train_model(data_project, "syn", cfg, progress=cancel_in_second_member, cancel=cancel)
    [run] = [r for r in store.list_runs(data_project, "train") if r.status == "cancelled"]
    assert "--resume" in run.message and "member 2" in run.message
    assert store.run_state_path(data_project, run.id).exists()
    assert not [m for m in store.list_models(data_project) if m.run_id == run.id]

    # a killed process leaves its run "running", maybe with metrics of an epoch it never checkpointed
    store.update_run(data_project, run.id, status="running")
    store.record_metrics(data_project, run.id, 5, {"val_loss": 123.0})

    resumed = resume_training(data_project, run.id)
    assert resumed.run_id == run.id and store.get_run(data_project, run.id).status == "completed"
    for target in TARGETS:
        assert resumed.metrics[target]["mae"] == pytest.approx(reference.metrics[target]["mae"], rel=1e-4)
    steps = [s for s, _ in store.run_metrics(data_project, run.id)["val_loss"]]
    assert steps == [0, 1, 2, 3, 4, 5]
    with pytest.raises(CrystalStudioError, match="already completed"):
        resume_training(data_project, run.id)


def test_cancel_before_the_first_checkpoint_resumes_from_scratch(data_project):
    cancel = CancelToken()

    def cancel_at_first_batch(event):
        if "batch_loss" in event.metrics:
            cancel.cancel()

    with pytest.raises(Cancelled):
        train_model(data_project, "syn", config(epochs=2), progress=cancel_at_first_batch, cancel=cancel)
    [run] = store.list_runs(data_project, "train")
    assert run.status == "cancelled" and not store.run_state_path(data_project, run.id).exists()
    result = resume_training(data_project, run.id)
    assert [s for s, _ in store.run_metrics(data_project, run.id)["val_loss"]] == [0, 1]
    assert store.get_model(data_project, result.model_id).run_id == run.id


def test_nan_guard_keeps_the_best_checkpoint(data_project, monkeypatch):
    real = training._masked_loss
    calls = {"n": 0}

    def poisoned(pred, target, kind):
        calls["n"] += 1
        loss = real(pred, target, kind)
        return loss * math.nan if calls["n"] > 12 else loss  # 4 batches + 1 validation per epoch

    monkeypatch.setattr(training, "_masked_loss", poisoned)
    result = train_model(data_project, "syn", config(epochs=6))
    assert "non-finite loss" in result.message and "kept the best checkpoint" in result.message
    run = store.get_run(data_project, result.run_id)
    assert run.status == "completed" and "non-finite" in run.message
    assert all(math.isfinite(m["mae"]) for m in result.metrics.values())


def test_nan_in_the_first_epoch_fails_cleanly(data_project, monkeypatch):
    monkeypatch.setattr(training, "_masked_loss", lambda pred, target, kind: pred.sum() * math.nan)
    with pytest.raises(TrainingDiverged, match="lower --lr"):
        train_model(data_project, "syn", config(epochs=2))
    [run] = store.list_runs(data_project, "train")
    assert run.status == "failed" and "diverged" in run.message
    assert store.list_models(data_project) == []


def test_early_stopping_stops_a_member(data_project, monkeypatch):
    monkeypatch.setattr(training.EnsembleTrainer, "_validate", lambda self, model: (1.0, {"band_gap": 0.5}))
    result = train_model(data_project, "syn", config(epochs=30, patience=2))
    assert "early stop after epoch 3" in result.message
    [info] = store.get_model(data_project, result.model_id).hyperparameters["training"]["members"]
    assert info["epochs"] == 3 and info["best_epoch"] == 1


def test_user_errors_are_reported(data_project):
    with pytest.raises(NotFoundError):
        train_model(data_project, "nope", config())
    with pytest.raises(CrystalStudioError, match="bulk_modulus"):
        train_model(data_project, "syn", config(targets=["bulk_modulus"]))
    with pytest.raises(CrystalStudioError, match="--epochs"):
        train_model(data_project, "syn", config(epochs=0))
    with pytest.raises(CrystalStudioError, match="--ensemble must be from 1 to 64"):
        train_model(data_project, "syn", config(ensemble=10**7))
    with pytest.raises(NotFoundError, match="no model with id 42"):
        load_predictor(data_project, 42)


def test_model_file_export_import_and_store_operations(data_project, tmp_path):
    result = train_model(data_project, "syn", config(epochs=1))
    path = export_model_file(data_project, result.model_id, tmp_path / "model.pt")
    new_id = import_model_file(data_project, path, name="imported")
    _, original = load_predictor(data_project, result.model_id)
    _, imported = load_predictor(data_project, new_id)
    structures = [s for _, s in data_project.iter_structures(_query(data_project.ids()[:4]))]
    np.testing.assert_allclose(predict_structures(original, structures)[0], predict_structures(imported, structures)[0])

    store.rename_model(data_project, new_id, "renamed")
    assert store.get_model(data_project, new_id, with_checkpoint=False).name == "renamed"
    store.delete_model(data_project, new_id)
    assert [m.id for m in store.list_models(data_project)] == [result.model_id]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CrystalStudioError, match="junk.pt"):
        import_model_file(data_project, tmp_path / "junk.pt")


def test_a_huge_label_is_named_before_training(data_project, tmp_path):
    crystals = synthetic_crystals(6)
    crystals[2][1]["band_gap"] = 1e308
    records, _ = read_structures([write_csv(tmp_path / "huge.csv", crystals)])
    data_project.add_records("huge", records)
    with pytest.raises(CrystalStudioError, match=r"of 'huge': band_gap = 1e\+308 is too large to train on") as info:
        train_model(data_project, "huge", config())
    assert "--lr" not in str(info.value)


def test_a_corrupt_state_file_is_named_and_unsafe_advice_never_given(data_project):
    import io
    import os

    import torch

    cancel = CancelToken()
    with pytest.raises(Cancelled):
        train_model(data_project, "syn", config(epochs=3),
                    progress=lambda e: e.metrics.get("val_loss") is not None and cancel.cancel(), cancel=cancel)
    [run] = [r for r in store.list_runs(data_project, "train") if r.status == "cancelled"]
    state = store.run_state_path(data_project, run.id)
    state.write_bytes(b"\x80\x02garbage")
    with pytest.raises(CrystalStudioError, match="state file") as info:
        resume_training(data_project, run.id)
    assert str(state) in str(info.value)

    buffer = io.BytesIO()
    torch.save({"payload": os.system}, buffer)  # a checkpoint that asks to run code
    state.write_bytes(buffer.getvalue())
    with pytest.raises(CrystalStudioError, match=r"asks to run code .*refused") as info:
        resume_training(data_project, run.id)
    assert "weights_only" not in str(info.value) and "trusted" not in str(info.value)
