"""train / models / predict / evaluate on the command line, with the JSON shapes of DESIGN.md."""

from __future__ import annotations

import functools

import pytest
import torch
from typer.testing import CliRunner

from crystal_studio.cli import app
from tests.clitools import invoke_cli, run_cli
from tests.ml_synthetic import synthetic_crystals, write_csv

TRAIN_FLAGS = ["--epochs", "3", "--ensemble", "2", "--device", "cpu", "--seed", "1", "--batch-size", "8",
               "--hidden", "12", "--layers", "2", "--cutoff", "4.5", "--threads", "1"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # --threads 1 sets it for the whole process


run = functools.partial(invoke_cli, json_exit_codes=(0, 3))  # 3: partly done, still a document


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project with a synthetic dataset and a 2-member model trained through the CLI."""
    root = tmp_path_factory.mktemp("ml_cli")
    project = root / "p.sqlite"
    crystals = synthetic_crystals(30, seed=5)
    assert run("new", project)[0] == 0
    assert run("import", project, write_csv(root / "train.csv", crystals[:24]), "--dataset", "syn")[0] == 0
    write_csv(root / "held_out.csv", crystals[24:])
    cifs = root / "cifs"
    cifs.mkdir()
    for k, (structure, _) in enumerate(crystals[24:27]):
        structure.to(filename=str(cifs / f"c{k}.cif"))
    code, doc, output = run("train", project, "--dataset", "syn", "--model", "gnn", "--targets",
                            "formation_energy_per_atom,band_gap", *TRAIN_FLAGS, "--json")
    assert code == 0, output
    return {"project": project, "root": root, "cifs": cifs, "train": doc}


def test_train_json_shape(trained):
    doc = trained["train"]
    assert isinstance(doc["model_id"], int) and isinstance(doc["run_id"], int) and doc["kind"] == "gnn"
    for target in ("formation_energy_per_atom", "band_gap"):
        assert set(doc["metrics"][target]) >= {"mae", "rmse", "r2"}
        assert doc["metrics"][target]["mae"] >= 0


def test_models_lists_the_trained_model(trained):
    code, doc, _ = run("models", trained["project"], "--json")
    assert code == 0
    [model] = doc["models"]
    assert model["id"] == trained["train"]["model_id"] and model["dataset"] == "syn"
    assert model["hyperparameters"]["members"] == 2 and "checkpoint" not in model


def test_predict_json_has_values_and_spread(trained):
    model_id = trained["train"]["model_id"]
    code, doc, _ = run("predict", trained["project"], "--model", model_id, trained["cifs"], "--json")
    assert code == 0 and doc["model_id"] == model_id
    assert len(doc["predictions"]) == 3
    for row in doc["predictions"]:
        assert row["source"].endswith(".cif")
        assert row["band_gap_std"] > 0 and isinstance(row["formation_energy_per_atom"], float)


def test_evaluate_json_on_a_labelled_csv(trained):
    model_id = trained["train"]["model_id"]
    code, doc, _ = run("evaluate", trained["project"], "--model", model_id, "--data",
                       trained["root"] / "held_out.csv", "--json")
    assert code == 0 and doc["model_id"] == model_id and doc["n"] == 6
    assert set(doc["metrics"]["band_gap"]) >= {"mae", "rmse", "r2"}


def test_human_output_and_partial_predict(trained, tmp_path):
    model_id = trained["train"]["model_id"]
    code, _, _ = run("models", trained["project"])
    assert code == 0
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\n_cell_length_a 3\n")
    result = CliRunner().invoke(app, ["predict", str(trained["project"]), "--model", str(model_id),
                                      str(trained["cifs"] / "c0.cif"), str(bad)])
    assert result.exit_code == 3 and "bad.cif" in result.stderr and "±" in result.stdout


def test_resume_flag_rejects_a_completed_run(trained):
    with pytest.raises(Exception, match="already completed"):
        run("train", trained["project"], "--resume", trained["train"]["run_id"])


def test_user_errors_exit_2_without_traceback(trained):
    """Through the real entry point: a missing model and a missing dataset are user errors."""
    for args in (["evaluate", trained["project"], "--model", "99", "--data", trained["root"] / "held_out.csv"],
                 ["train", trained["project"], "--dataset", "nope", "--targets", "band_gap"]):
        result = run_cli(*args, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "error:" in result.stderr


def test_ensemble_metrics_report_the_calibration_of_the_spread(trained):
    code, doc, _ = run("evaluate", trained["project"], "--model", trained["train"]["model_id"], "--data",
                       trained["root"] / "held_out.csv", "--json")
    assert code == 0
    for metrics in doc["metrics"].values():
        assert 0 <= metrics["within_1sigma"] <= metrics["within_2sigma"] <= 1 and metrics["mean_std"] > 0
    assert "within_2sigma" in trained["train"]["metrics"]["band_gap"]


def test_calibration_fractions_count_errors_inside_k_sigma():
    import numpy as np

    from crystal_studio.ml.metrics import regression_metrics

    m = regression_metrics(np.array([0.0, 0.0, 0.0, 0.0]), np.array([0.5, 1.5, 2.5, -0.5]), np.ones(4))
    assert (m["within_1sigma"], m["within_2sigma"], m["mean_std"]) == (0.5, 0.75, 1.0)
    assert "within_1sigma" not in regression_metrics(np.zeros(2), np.ones(2), np.zeros(2))  # one model: no spread


def test_new_builtin_project_holds_the_builtin_dataset_and_model(tmp_path):
    project = tmp_path / "b.sqlite"
    code, _, output = run("new", project, "--builtin")
    assert code == 0, output
    _, datasets, _ = run("datasets", project, "--json")
    assert [d["name"] for d in datasets["datasets"]] == ["builtin"] and datasets["datasets"][0]["count"] > 2000
    _, models, _ = run("models", project, "--json")
    by_name = {m["name"]: m for m in models["models"]}
    assert list(by_name) == ["built-in CHGNet-label ensemble", "Materials Project GNN ensemble",
                             "Materials Project CHGNet-transfer ensemble"]
    chgnet_labels = by_name["built-in CHGNet-label ensemble"]
    assert chgnet_labels["kind"] == "gnn" and "bulk_modulus" in chgnet_labels["targets"] and chgnet_labels["metrics"]
    for name, kind in (("Materials Project GNN ensemble", "gnn"),
                       ("Materials Project CHGNet-transfer ensemble", "chgnet_transfer")):
        mp = by_name[name]
        assert mp["kind"] == kind and mp["targets"] == ["formation_energy_per_atom", "band_gap"]
        assert mp["metrics"]["band_gap"]["mae"] < 0.35 and mp["metrics"]["formation_energy_per_atom"]["mae"] < 0.07
    again = run_cli("new", project, "--builtin", timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr
