"""Runs other than optimizations (crystal-VAE sampling, structure prediction without models): their
candidates are summarized, listed and relaxed, and each is stored and completed in one transaction."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from crystal_studio.cli import app
from crystal_studio.design.job import run_summary
from crystal_studio.store import candidates as candidate_store


@pytest.fixture
def sampled(design_project):
    """(project, run id) of 16 crystals sampled from the tiny crystal VAE."""
    from crystal_studio.design.sampling import sample_model

    project, _, vae_id = design_project
    result = sample_model(project, vae_id, 16, seed=1, device="cpu")
    return project, result.run_id


def test_candidates_of_a_sampling_run_are_summarized_without_spec_criteria(sampled):
    project, run_id = sampled
    records = candidate_store.list_candidates(project, run_id)
    summary = run_summary(project, run_id)
    assert summary["n"] == len(records) and summary["criteria"] == {}
    assert summary["valid_rate"] == pytest.approx(sum(r.evaluation["valid"] for r in records) / len(records))
    assert 0 <= summary["novel_rate"] <= summary["unique_rate"] <= 1

    runner = CliRunner()
    done = runner.invoke(app, ["candidates", str(project.path), "--run", str(run_id), "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["summary"] == summary and len(doc["candidates"]) == len(records)
    table = runner.invoke(app, ["candidates", str(project.path), "--run", str(run_id)])
    assert table.exit_code == 0, table.output
    assert f"run {run_id} (sampling): {len(records)} candidates" in table.stdout
    assert "structurally_valid" in table.stdout
