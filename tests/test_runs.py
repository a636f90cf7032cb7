"""Runs and their owners (issue 20 item 3): a killed `train` is marked interrupted when the project is
next opened and resumes; Ctrl-C cancels a training or optimization run with a message that says what
to do; a run another live process owns cannot be resumed twice; `runs` lists and shows runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crystal_studio.cli import app
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project
from tests.clitools import WIDE, run_cli
from tests.ml_synthetic import synthetic_crystals, write_csv

TINY = ["--targets", "band_gap", "--ensemble", "1", "--device", "cpu", "--batch-size", "8", "--hidden", "12",
        "--layers", "2", "--cutoff", "4.5", "--threads", "1", "--patience", "1000"]
SPECS = Path(__file__).resolve().parents[1] / "resources" / "specs"
ENV = {**os.environ, **WIDE}  # rich tables keep whole lines


def cli(*args) -> subprocess.CompletedProcess:
    """``crystal-studio ARGS`` through the real entry point, with wide tables."""
    return run_cli(*args, env=WIDE)


def invoke(*args):
    """``crystal-studio ARGS`` in this process (for output shapes; exit codes go through :func:`cli`)."""
    result = CliRunner().invoke(app, [str(a) for a in args], env=WIDE)
    assert result.exit_code == 0 and result.exception is None, result.output
    return result


def _interruptible() -> None:
    """In the child: Ctrl-C acts as at a terminal even when the tests themselves were started in the
    background (a non-interactive shell starts background jobs with SIGINT ignored, and Python then
    keeps it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "crystal_studio", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, preexec_fn=_interruptible)


def wait_for_metrics(path: Path, kind: str, proc: subprocess.Popen) -> int:
    """Id of the first running ``kind`` run of ``path`` that has recorded metrics (read-only polling)."""
    deadline = time.monotonic() + 240
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the process ended first (exit {proc.returncode}): {proc.communicate()[1]}")
            row = conn.execute("SELECT r.id FROM runs r WHERE r.kind = ? AND r.status = 'running' AND EXISTS "
                               "(SELECT 1 FROM run_metrics m WHERE m.run_id = r.id)", [kind]).fetchone()
            if row:
                return row[0]
            time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {kind} run recorded metrics in time")


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    """The process's (stdout, stderr) once it ends; killed (never left running) if it outlives ``timeout`` s."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def status_of(path: Path, run_id: int) -> str:
    """A run's status as stored, read without opening the project (which would mark stale runs)."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()[0]


def set_owner(project: Project, run_id: int, host: str, pid: int, heartbeat: datetime) -> None:
    with project.transaction() as db:
        db["runs"].update(run_id, {"status": "running", "owner_host": host, "owner_pid": pid,
                                   "heartbeat": heartbeat.isoformat(timespec="seconds")})


@pytest.fixture(scope="module")
def syn_project(tmp_path_factory, one_torch_thread) -> Path:
    """A project holding 24 synthetic crystals (dataset 'syn') and a tiny band-gap GNN (model 1)."""
    from crystal_studio.ml.kinds import config_for
    from crystal_studio.ml.training import train_model
    from crystal_studio.store.importer import import_paths

    root = tmp_path_factory.mktemp("runs")
    with closing(Project.create(root / "syn.sqlite")) as project:
        import_paths(project, [write_csv(root / "syn.csv", synthetic_crystals(24, seed=5))], "syn")
        train_model(project, "syn", config_for("gnn", ["band_gap"], epochs=2, ensemble=1, batch_size=8, hidden=12,
                                               layers=2, cutoff=4.5, device="cpu", threads=1))
    return root / "syn.sqlite"


@pytest.fixture
def syn(syn_project, tmp_path) -> Path:
    """A fresh copy of :func:`syn_project` for one test."""
    return Path(shutil.copy(syn_project, tmp_path / "p.sqlite"))


def test_a_killed_training_run_is_marked_interrupted_on_open_and_resumes(syn):
    proc = start("train", syn, "--dataset", "syn", "--epochs", "60", *TINY)
    run_id = wait_for_metrics(syn, "train", proc)
    proc.kill()
    proc.wait()
    assert status_of(syn, run_id) == "running"  # nobody said otherwise

    with closing(Project.open(syn)) as project:
        run = model_store.get_run(project, run_id)
    assert run.status == "interrupted" and run.finished
    assert f"process {proc.pid} on {socket.gethostname()} ended" in run.message
    assert run.message.endswith(f"resume with: crystal-studio train PROJECT --resume {run_id}")
    listed = cli("runs", syn)
    assert listed.returncode == 0, listed.stderr
    assert f"crystal-studio train {syn} --resume {run_id}" in listed.stdout

    resumed = cli("train", syn, "--resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["run_id"] == run_id
    with closing(Project.open(syn)) as project:
        run = model_store.get_run(project, run_id)
        steps = [step for step, _ in model_store.run_metrics(project, run_id)["val_loss"]]
    assert run.status == "completed" and run.owner_pid not in (proc.pid, os.getpid())
    assert steps == list(range(60))  # every epoch once: nothing lost, nothing twice


def test_ctrl_c_cancels_a_training_run_and_says_how_to_resume(syn):
    proc = start("train", syn, "--dataset", "syn", "--epochs", "500", *TINY)
    run_id = wait_for_metrics(syn, "train", proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = finish(proc)
    assert proc.returncode == 130, stderr
    assert f"run {run_id} cancelled at" in stderr and f"crystal-studio train {syn} --resume {run_id}" in stderr
    assert "Traceback" not in stderr
    with closing(Project.open(syn)) as project:
        run = model_store.get_run(project, run_id)
    assert run.status == "cancelled" and "resume with" in run.message


def test_ctrl_c_cancels_an_optimization_run_with_a_message(syn, tmp_path):
    spec = json.loads((SPECS / "smoacs_perovskite_gap_2.5eV.json").read_text())
    spec["objectives"] = [o for o in spec["objectives"] if o["property"] == "band_gap"]
    spec_path = tmp_path / "gap.json"
    spec_path.write_text(json.dumps(spec))
    proc = start("optimize", syn, "--spec", spec_path, "--models", "1", "--method", "smoacs", "--candidates", "8",
                 "--steps", "1000000", "--device", "cpu")
    run_id = wait_for_metrics(syn, "optimization", proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = finish(proc)
    assert proc.returncode == 130, stderr
    assert f"run {run_id} keeps what it recorded" in stderr and "Traceback" not in stderr
    with closing(Project.open(syn)) as project:
        run = model_store.get_run(project, run_id)
        assert (run.status, run.message) == ("cancelled", "cancelled by Ctrl-C")
        assert model_store.run_metrics(project, run_id)


def test_keyboard_interrupt_cancels_the_announced_run(project):
    from crystal_studio.jobs.cli_runner import RunCancelled, run_with_progress

    run_id = model_store.create_run(project, "optimization", {}, 0, "cpu", {})

    def work(progress, cancel):
        model_store.announce_run(run_id, progress)
        with model_store.guarded_run(project, run_id):
            raise KeyboardInterrupt

    with pytest.raises(RunCancelled) as caught:
        run_with_progress("optimizing", work, quiet=True)
    assert caught.value.run_id == run_id
    run = model_store.get_run(project, run_id)
    assert (run.status, run.message) == ("cancelled", "cancelled by Ctrl-C") and run.finished

    def before_any_run(progress, cancel):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_with_progress("loading", before_any_run, quiet=True)


def test_a_run_owned_by_a_live_process_cannot_be_resumed_twice(project):
    run_id = model_store.create_run(project, "train", {"config": {"kind": "gnn"}}, 0, "cpu", {})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        set_owner(project, run_id, socket.gethostname(), other.pid, datetime.now(UTC))
        with closing(Project.open(project.path)) as reopened:
            assert model_store.get_run(reopened, run_id).status == "running"  # its owner is alive
        refused = cli("train", project.path, "--resume", run_id)
        assert refused.returncode == 2, refused.stderr
        assert f"run {run_id} is running in process {other.pid} on {socket.gethostname()}" in refused.stderr
        assert "Traceback" not in refused.stderr
        with pytest.raises(model_store.RunBusyError, match=f"process {other.pid}"):
            model_store.update_run(project, run_id, status="running")  # the claim a resume makes
    finally:
        other.kill()
        other.wait()
    with closing(Project.open(project.path)) as reopened:
        assert model_store.get_run(reopened, run_id).status == "interrupted"
    model_store.update_run(project, run_id, status="running")
    run = model_store.get_run(project, run_id)
    assert (run.status, run.owner_pid, run.owner_host) == ("running", os.getpid(), socket.gethostname())
    model_store.update_run(project, run_id, status="running")  # this process may claim its own run again


def test_runs_on_other_hosts_are_judged_by_their_heartbeat(project):
    fresh = model_store.create_run(project, "sampling", {}, 0, "cpu", {})
    old = model_store.create_run(project, "optimization", {}, 0, "cpu", {})
    set_owner(project, fresh, "elsewhere.invalid", 1, datetime.now(UTC) - timedelta(minutes=5))
    set_owner(project, old, "elsewhere.invalid", 1, datetime.now(UTC) - timedelta(hours=3))
    with closing(Project.open(project.path)) as reopened:
        assert model_store.get_run(reopened, fresh).status == "running"
        run = model_store.get_run(reopened, old)
    assert run.status == "interrupted"
    assert run.message == "interrupted: process 1 on elsewhere.invalid ended without finishing it"


def test_a_v4_project_migrates_and_its_ownerless_running_run_is_interrupted(tmp_path):
    path = tmp_path / "v4.sqlite"
    old = Project(path)
    old.migrate(target=4)
    with old.transaction() as db:
        db["runs"].insert({"id": 7, "kind": "train", "status": "running", "parameters": "{}", "started": "x"})
    old.close()
    with closing(Project.open(path)) as project:
        run = model_store.get_run(project, 7)
    assert run.status == "interrupted" and run.owner_pid is None
    assert run.message == "interrupted: its process ended without finishing it; resume with: " \
                          "crystal-studio train PROJECT --resume 7"


def test_record_metrics_refreshes_the_heartbeat(project):
    run_id = model_store.create_run(project, "optimization", {}, 0, "cpu", {})
    set_owner(project, run_id, socket.gethostname(), os.getpid(), datetime.now(UTC) - timedelta(hours=1))
    model_store.record_metrics(project, run_id, 0, {"loss": 1.0})
    beat = datetime.fromisoformat(model_store.get_run(project, run_id).heartbeat)
    assert datetime.now(UTC) - beat < timedelta(minutes=1)


def test_runs_lists_and_shows_runs(project):
    train = model_store.create_run(project, "train", {"dataset": "syn", "split": {"train": list(range(50))}}, 3,
                                   "cpu", {"torch": "2"})
    model_store.record_metrics(project, train, 0, {"val_loss": 2.0})
    model_store.record_metrics(project, train, 1, {"val_loss": 1.5})
    model_store.update_run(project, train, status="cancelled", message="resume with: crystal-studio train PROJECT "
                                                                       f"--resume {train}")
    opt = model_store.create_run(project, "optimization", {"method": "smoacs"}, 0, "cpu", {})
    model_store.update_run(project, opt, status="completed", message="done")
    project.close()

    listed = invoke("runs", project.path, "--json")
    runs = json.loads(listed.stdout)["runs"]
    assert [r["id"] for r in runs] == [opt, train]  # newest first
    for r in runs:
        assert {"id", "kind", "status", "started", "finished", "message", "owner_pid", "heartbeat"} <= set(r)
        assert "parameters" not in r
    assert (runs[1]["kind"], runs[1]["status"]) == ("train", "cancelled")
    only = json.loads(invoke("runs", project.path, "--kind", "optimization", "--json").stdout)["runs"]
    assert [r["id"] for r in only] == [opt]

    doc = json.loads(invoke("runs", project.path, "--show", train, "--json").stdout)
    assert doc["id"] == train and doc["seed"] == 3 and doc["parameters"]["dataset"] == "syn"
    assert doc["versions"] == {"torch": "2"}
    assert doc["metrics"] == {"val_loss": {"step": 1, "value": 1.5, "n": 2}}

    table = invoke("runs", project.path).stdout
    assert "cancelled" in table and "completed" in table
    assert f"crystal-studio train {project.path} --resume {train}" in table
    detail = invoke("runs", project.path, "--show", train).stdout
    assert "last metrics" in detail and "[50 items]" in detail

    for args, message in ((["--kind", "bogus"], "--kind must be one of train, optimization, sampling"),
                          (["--show", "999"], "no run with id 999"),
                          (["--show", str(train), "--kind", "train"], "leave out --kind")):
        refused = cli("runs", project.path, *args)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("verb", ["train", "optimize"])
def test_sigterm_ends_a_run_as_cancelled_not_running(syn, tmp_path, verb):
    if verb == "train":
        proc = start("train", syn, "--dataset", "syn", "--epochs", "500", *TINY)
    else:
        spec = json.loads((SPECS / "smoacs_perovskite_gap_2.5eV.json").read_text())
        spec["objectives"] = [o for o in spec["objectives"] if o["property"] == "band_gap"]
        spec_path = tmp_path / "gap.json"
        spec_path.write_text(json.dumps(spec))
        proc = start("optimize", syn, "--spec", spec_path, "--models", "1", "--method", "smoacs", "--candidates", "8",
                     "--steps", "1000000", "--device", "cpu")
    run_id = wait_for_metrics(syn, "train" if verb == "train" else "optimization", proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = finish(proc)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and f"run {run_id}" in stderr
    with closing(Project.open(syn)) as project:
        run = model_store.get_run(project, run_id)
    assert run.status == "cancelled" and run.finished
    assert ("resume with" in run.message) if verb == "train" else (run.message == "cancelled by SIGTERM")
