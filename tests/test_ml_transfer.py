"""The CHGNet-transfer model kind: trains on a tiny set through the CLI, predicts with a spread, judges
optimizations but is refused as the model an optimizer follows, survives a model-file round trip, and
resumes an interrupted run without recomputing CHGNet features."""

from __future__ import annotations

import json
from contextlib import closing

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from crystal_studio.cli import app
from tests.ml_synthetic import synthetic_crystals, write_csv

FLAGS = ["--model", "chgnet_transfer", "--targets", "formation_energy_per_atom,band_gap", "--epochs", "15",
         "--ensemble", "3", "--device", "cpu", "--seed", "2", "--batch-size", "8", "--hidden", "16", "--threads", "1"]


def run(*args) -> tuple[int, dict | None, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    doc = json.loads(result.stdout) if "--json" in args and result.exit_code in (0, 3) else None
    return result.exit_code, doc, result.stderr


@pytest.fixture(scope="module")
def transfer(tmp_path_factory, one_torch_thread):
    root = tmp_path_factory.mktemp("transfer")
    project = root / "p.sqlite"
    crystals = synthetic_crystals(30, seed=7)
    assert run("new", project)[0] == 0
    assert run("import", project, write_csv(root / "train.csv", crystals[:24]), "--dataset", "syn")[0] == 0
    held_out = write_csv(root / "held_out.csv", crystals[24:])
    code, doc, stderr = run("train", project, "--dataset", "syn", *FLAGS, "--json")
    assert code == 0, stderr
    return {"project": project, "root": root, "held_out": held_out, "train": doc, "crystals": crystals}


def test_train_reports_the_kind_and_calibrated_metrics(transfer):
    doc = transfer["train"]
    assert doc["kind"] == "chgnet_transfer"
    for target in ("formation_energy_per_atom", "band_gap"):
        m = doc["metrics"][target]
        assert m["mae"] >= 0 and m["n"] >= 1
        assert 0 <= m["within_2sigma"] <= 1 and m["mean_std"] > 0  # three members disagree somewhat


def test_models_lists_kind_targets_and_members(transfer):
    _, doc, _ = run("models", transfer["project"], "--json")
    [model] = doc["models"]
    assert model["kind"] == "chgnet_transfer" and model["hyperparameters"]["members"] == 3
    assert model["targets"] == ["formation_energy_per_atom", "band_gap"]


def test_evaluate_and_predict_agree(transfer):
    model_id = transfer["train"]["model_id"]
    code, ev, _ = run("evaluate", transfer["project"], "--model", model_id, "--data", transfer["held_out"], "--json")
    assert code == 0 and ev["n"] == 6
    code, pred, _ = run("predict", transfer["project"], "--model", model_id, transfer["held_out"], "--json")
    assert code == 0 and len(pred["predictions"]) == 6
    truth = [props["formation_energy_per_atom"] for _, props in transfer["crystals"][24:]]
    mae = np.mean([abs(p["formation_energy_per_atom"] - t) for p, t in zip(pred["predictions"], truth, strict=True)])
    assert mae == pytest.approx(ev["metrics"]["formation_energy_per_atom"]["mae"], rel=1e-4)
    assert all(p["band_gap_std"] > 0 for p in pred["predictions"])


def test_an_optimizer_refuses_it_but_the_judge_accepts_it(transfer):
    from crystal_studio.core.errors import CrystalStudioError
    from crystal_studio.ml.predictor import load_predictor
    from crystal_studio.store.project import Project

    model_id = transfer["train"]["model_id"]
    with closing(Project.open(transfer["project"])) as project:
        with pytest.raises(CrystalStudioError, match="not differentiable"):
            load_predictor(project, model_id, differentiable=True)
        _, judge = load_predictor(project, model_id)
        assert judge.targets == ["formation_energy_per_atom", "band_gap"]


def test_model_file_round_trip_predicts_the_same(transfer, tmp_path):
    from crystal_studio.ml.predictor import export_model_file, import_model_file, load_predictor, predict_structures
    from crystal_studio.store.project import Project

    structures = [s for s, _ in transfer["crystals"][24:27]]
    with closing(Project.open(transfer["project"])) as project:
        path = export_model_file(project, transfer["train"]["model_id"], tmp_path / "m.pt")
        new_id = import_model_file(project, path, name="copy")
        before = predict_structures(load_predictor(project, transfer["train"]["model_id"])[1], structures)
        after = predict_structures(load_predictor(project, new_id)[1], structures)
    np.testing.assert_allclose(before[0], after[0], rtol=1e-6)
    np.testing.assert_allclose(before[1], after[1], rtol=1e-6)


def test_a_cancelled_run_resumes_from_its_saved_features(transfer, monkeypatch):
    """Cancel after the first member; the resume must not run CHGNet again and must finish the ensemble."""
    from crystal_studio.core.errors import Cancelled
    from crystal_studio.core.progress import CancelToken
    from crystal_studio.ml import transfer_training
    from crystal_studio.ml.training import TrainConfig, resume_training, train_model
    from crystal_studio.store import models as model_store
    from crystal_studio.store.project import Project

    config = TrainConfig.for_kind("chgnet_transfer", ["formation_energy_per_atom"], epochs=4, ensemble=2,
                                  hidden=8, batch_size=8, device="cpu")
    token = CancelToken()

    def cancel_after_first_member(event):
        if event.message.startswith("member 1/2 epoch 4"):
            token.cancel()

    with closing(Project.open(transfer["project"])) as project:
        with pytest.raises(Cancelled):
            train_model(project, "syn", config, None, cancel_after_first_member, token)
        run = model_store.list_runs(project, "train")[0]
        assert run.status == "cancelled" and "--resume" in run.message

        def no_chgnet(*_args, **_kwargs):
            raise AssertionError("CHGNet features were recomputed on resume")

        monkeypatch.setattr(transfer_training, "prepare_inputs", no_chgnet)
        result = resume_training(project, run.id)
        assert result.kind == "chgnet_transfer"
        assert model_store.get_run(project, run.id).status == "completed"
        assert model_store.get_model(project, result.model_id, with_checkpoint=False).hyperparameters["members"] == 2
        steps = {s for s, _ in model_store.run_metrics(project, run.id)["val_loss"]}
        assert steps == set(range(8))  # 2 members x 4 epochs, none lost or repeated
    assert torch.get_num_threads() >= 1
