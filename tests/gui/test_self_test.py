"""`crystal-studio --self-test` of the source install, run as a real subprocess under the suite's Xvfb:
it opens the window on a fresh built-in project, renders, trains and optimizes, and reports each check."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from crystal_studio import __version__

CHECKS = ["environment", "main_window", "render", "training", "optimization"]


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="the self-test opens a window: run under xvfb-run")
def test_self_test_passes_and_reports_every_check(tmp_path):
    report_path = tmp_path / "out" / "report.json"
    home = tmp_path / "user-data"
    env = {**os.environ, "CRYSTAL_STUDIO_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "crystal_studio", "--self-test", "--report", str(report_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["passed"] is True and report["crystal_studio"] == __version__ and report["frozen"] is False
    assert [c["name"] for c in report["checks"]] == CHECKS
    for check in report["checks"]:
        assert check["passed"] and not check["error"] and check["seconds"] > 0 and check["detail"], check
    by_name = {c["name"]: c for c in report["checks"]}
    assert "2,685 structures, 3 models" in by_name["main_window"]["detail"]
    assert "atoms drawn" in by_name["render"]["detail"]
    assert "1 epoch" in by_name["training"]["detail"]
    assert "8 candidates × 5 steps" in by_name["optimization"]["detail"]
    versions = report["environment"]["versions"]
    assert versions["Crystal Studio"] == __version__ and versions["VTK"] and versions["torch"]
    assert report["environment"]["device"]["statement"]
    for name in CHECKS:
        assert f"PASS  {name}" in proc.stdout
    assert "self-test passed: 5 of 5 checks passed" in proc.stdout
    assert not home.exists()  # the user's data folder is never touched: the built-in project went to a temp folder


def test_report_without_self_test_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "crystal_studio", "--report", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--report goes with --self-test" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_self_test_without_a_display_fails_with_the_reason(tmp_path):
    report_path = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "crystal_studio", "--self-test", "--report", str(report_path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1 and "needs a display" in proc.stdout and "xvfb-run" in proc.stdout
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["passed"] is False and report["checks"][0]["name"] == "display"


def test_version_has_one_source_and_imports_nothing_heavy():
    from importlib import metadata

    assert metadata.version("crystal-studio") == __version__  # pyproject reads crystal_studio.__version__
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "crystal_studio", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"crystal-studio {__version__}"
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    heavy = imported & {"torch", "PySide6", "vtkmodules", "pymatgen"}
    assert not heavy, heavy
