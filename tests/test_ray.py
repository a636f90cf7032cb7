"""Scale-out on Ray (issue 19): the Ray executor against the local one, on a real Ray cluster.

The cluster is a real two-node cluster on this machine: a head started with ``ray start --head
--node-ip-address 127.0.0.1 --port PORT --num-cpus 1`` and one worker node joined to it with ``ray
start --address 127.0.0.1:PORT --num-cpus 1`` (token authentication off, a private temp dir); the
tests' driver connects with ``ray.init(address=...)``. Where ``ray start`` cannot run, the module
falls back to ``ray.init(num_cpus=2)`` in this process (the test ids say which via ``CLUSTER_KIND``).
One cluster serves the whole module. Everything runs on CPU with one torch thread per task.

Checks: relaxing N candidates on Ray stores the same results as the local executor, even when a
worker is killed mid-run (its task is resubmitted and reported); a small sweep stores the same runs;
cancelling leaves no task running; a task whose worker dies more often than the retries allow is
reported as failed, never silently missing. Skipped, with the reason, when Ray is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'crystal-studio[cluster]'); "
                                         "the scale-out tests need it")

from crystal_studio.core.errors import Cancelled  # noqa: E402
from crystal_studio.core.progress import CancelToken  # noqa: E402

from .conftest import GOOD  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "resources" / "specs" / "smoacs_perovskite_gap_2.5eV.json"
RAY_BIN = Path(sys.executable).with_name("ray")
CLUSTER_KIND = {"kind": None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_pids(marker: str) -> list[int]:
    """Processes of the cluster whose command line names ``marker`` (its temp dir), and their children."""
    parents: dict[int, int] = {}
    mine: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry.name)] = ppid
        if marker in cmdline:
            mine.add(int(entry.name))
    grown = True
    while grown:
        children = {pid for pid, ppid in parents.items() if ppid in mine and pid not in mine}
        grown = bool(children)
        mine |= children
    return sorted(mine)


def _task_workers(marker: str) -> list[int]:
    """Worker processes of the cluster now executing a task (Ray titles them 'ray::_ray_task')."""
    out = []
    for pid in _cluster_pids(marker):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_ray_task"):
                out.append(pid)
        except OSError:
            pass
    return out


def _stop(marker: str) -> None:
    pids = _cluster_pids(marker)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node (1 CPU each) on loopback; yields the temp-dir marker (None for the
    in-process fallback)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp = tempfile.mkdtemp(prefix="csray-", dir="/tmp")
    port = _free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats",
              "--object-store-memory", str(150 * 1024 * 1024)]
    marker = None
    try:
        subprocess.run([str(RAY_BIN), "start", "--head", "--port", str(port), "--temp-dir", temp,
                        "--include-dashboard", "false", *common], env=env, check=True, capture_output=True, timeout=90)
        marker = temp
        subprocess.run([str(RAY_BIN), "start", "--address", f"127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True, timeout=90)
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, logging_level="ERROR")
        deadline = time.monotonic() + 30
        while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        CLUSTER_KIND["kind"] = "ray start: head + worker on 127.0.0.1"
    except (OSError, subprocess.SubprocessError):
        if marker:
            _stop(marker)
        marker = None
        ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False, logging_level="ERROR")
        CLUSTER_KIND["kind"] = "ray.init(num_cpus=2)"
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test's own tasks travel by value
    try:
        yield marker
    finally:
        ray.shutdown()
        if marker:
            _stop(marker)
        shutil.rmtree(temp, ignore_errors=True)
        if before is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = before


@pytest.fixture(scope="module")
def executor(cluster):
    from crystal_studio.jobs.executors import RayExecutor

    return RayExecutor()  # uses the session the fixture opened


@pytest.fixture(scope="module")
def designed(tmp_path_factory):
    """A project with the good structures, a tiny predictor, a judge and a 'random' run of 4
    candidates: (path, predictor id, judge id, run id)."""
    import torch

    from crystal_studio.design.job import run_optimization
    from crystal_studio.design.spec import load_spec
    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor, save_predictor
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ray") / "p.sqlite"
    project = Project.create(path)
    import_paths(project, [GOOD], "good")
    ids = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        predictor = CrystalPredictor(GNNConfig(n_targets=2, hidden=16, layers=1, n_gaussians=8),
                                     ["band_gap", "formation_energy_per_atom"], members=2)
        predictor.set_normalization([1.0, -1.0], [1.0, 1.0])
        ids.append(save_predictor(project, predictor, f"tiny {seed}", metrics={}, dataset_id=project.dataset_id("good")))
    run = run_optimization(project, load_spec(SPEC), "random", [ids[0]], n_candidates=4, n_steps=3, seed=0,
                           device="cpu", judge_model=ids[1])
    project.close()
    torch.set_num_threads(threads)
    return path, ids[0], ids[1], run.run_id


def _copy(path: Path, tmp_path: Path, name: str):
    from crystal_studio.store.project import Project
    from crystal_studio.store.transfer import snapshot_bytes

    source = Project.open(path)
    target = tmp_path / name
    target.write_bytes(snapshot_bytes(source))
    source.close()
    return Project.open(target)


def _stored(project, run_id: int) -> list[tuple]:
    from crystal_studio.store.candidates import list_candidates

    out = []
    for r in list_candidates(project, run_id):
        checks = dict(r.evaluation)
        out.append((r.formula, r.structure_json, r.relaxed_structure_json, r.oracle_energy_per_atom,
                    json.dumps(checks, sort_keys=True)))
    return out


def test_relaxation_on_ray_stores_what_local_does_even_with_a_worker_killed(cluster, executor, designed, tmp_path):
    """4 candidates relaxed locally and on Ray store identical relaxed structures, energies and
    re-checks; a worker SIGKILLed mid-relaxation loses its task, which is resubmitted and reported."""
    from crystal_studio.design.relaxation import relax_run

    path, _, _, run_id = designed
    local, remote = _copy(path, tmp_path, "local.sqlite"), _copy(path, tmp_path, "ray.sqlite")
    relax_run(local, run_id, device="cpu", fmax=0.05, max_steps=25)
    killed: list[int] = []

    def kill_one() -> None:  # the first worker seen relaxing is killed
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            busy = _task_workers(cluster) if cluster else []
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one, daemon=True)
    if cluster:
        killer.start()
    outcome = relax_run(remote, run_id, device="cpu", fmax=0.05, max_steps=25, executor=executor)
    killer.join(timeout=1)
    assert not outcome.lost
    assert len(outcome.results) == 4
    if cluster:
        assert killed, "no worker was seen running a relaxation"
        assert sum(outcome.report.retried.values()) >= 1, "the killed worker's task was not reported as lost"
    assert _stored(remote, run_id) == _stored(local, run_id)


def test_sweep_on_ray_stores_the_runs_local_does(executor, designed, tmp_path):
    """random and smoacs × seeds 0, 1, judged: the same candidates and summaries locally and on Ray,
    each a completed run with its metrics, plus the comparison of all four."""
    import torch

    from crystal_studio.design.spec import load_spec
    from crystal_studio.design.sweep import run_sweep
    from crystal_studio.store import models as model_store

    path, model_id, judge_id, _ = designed
    results = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, tasks in (("local", None), ("ray", executor)):
            project = _copy(path, tmp_path, f"{name}.sqlite")
            result = run_sweep(project, [load_spec(SPEC)], ["random", "smoacs"], [0, 1], [model_id], 4, 3,
                               device="cpu", judge_model=judge_id, executor=tasks)
            runs = [model_store.get_run(project, c["run_id"]) for c in result.cells]
            assert all(r.status == "completed" for r in runs)
            metrics = [project.db.execute("SELECT COUNT(*) FROM run_metrics WHERE run_id = ?", [r.id]).fetchone()[0]
                       for r in runs]
            assert all(m > 0 for m in metrics)
            results[name] = {"cells": [(c["method"], c["seed"]) for c in result.cells],
                             "candidates": [_stored(project, c["run_id"]) for c in result.cells],
                             "parameters": [r.parameters for r in runs], "metrics": metrics,
                             "success": [(c.success_own, c.success_judge, c.unique_rate) for c in result.comparison]}
            assert len(result.comparison) == 4 and result.report.complete
    finally:
        torch.set_num_threads(threads)
    assert results["local"]["cells"] == [("random", 0), ("random", 1), ("smoacs", 0), ("smoacs", 1)]
    for key in ("cells", "parameters", "metrics", "success", "candidates"):
        assert results["ray"][key] == results["local"][key], key


def test_screening_on_ray_stores_the_run_local_does(executor, designed, tmp_path, monkeypatch):
    """'screen' over the good structures in chunks of 2 (Ray tasks finishing in any order) stores the
    same candidates and per-step metrics as the local executor."""
    from crystal_studio.design.job import run_optimization
    from crystal_studio.design.optimizers.baselines import DatasetScreening
    from crystal_studio.design.spec import load_spec

    path, model_id, judge_id, _ = designed
    monkeypatch.setattr(DatasetScreening, "chunk", 2)
    stored = {}
    for name, tasks in (("local", None), ("ray", executor)):
        project = _copy(path, tmp_path, f"screen-{name}.sqlite")
        result = run_optimization(project, load_spec(SPEC), "screen", [model_id], n_candidates=3, n_steps=1,
                                  device="cpu", dataset="good", judge_model=judge_id, executor=tasks)
        metrics = list(project.db.execute("SELECT step, name, value FROM run_metrics WHERE run_id = ? "
                                          "ORDER BY step, name", [result.run_id]))
        stored[name] = (_stored(project, result.run_id), metrics, result.summary)
        assert len(metrics) > 0 and len(stored[name][0]) == 3
    assert stored["ray"] == stored["local"]


def test_polymorphs_on_ray_store_the_rows_local_does(executor, tmp_path):
    """Two relaxed NaCl trials with frames: the same rows (names, energies, structures) on Ray."""
    from crystal_studio.design.polymorphs import generate_polymorphs
    from crystal_studio.store.project import Project, StructureQuery

    rows = {}
    for name, tasks in (("local", None), ("ray", executor)):
        project = Project.create(tmp_path / f"poly-{name}.sqlite")
        result = generate_polymorphs(project, ["NaCl"], "poly", per_formula=2, frames=1, max_atoms=4, relax_steps=5,
                                     device="cpu", executor=tasks)
        assert result.formulas[0].status == "ok" and result.n_relaxed == 2
        query = StructureQuery(dataset="poly")
        structures = {r["name"]: s.as_dict() for r, s in project.iter_structures(query)}
        rows[name] = sorted((r["name"], json.dumps(structures[r["name"]], sort_keys=True),
                             json.dumps(r["properties"], sort_keys=True)) for r in project.page(query, limit=100))
        project.close()
    assert rows["ray"] == rows["local"] and len(rows["local"]) >= 2


def _beat_until_cancelled(shared, item, context):
    """A task that writes a heartbeat file every 50 ms for up to a minute."""
    beat = Path(item["folder"]) / f"beat-{item['n']}"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        beat.write_text(str(time.time()))
        time.sleep(0.05)
    return item["n"]


def test_cancel_stops_queued_tasks_and_running_ones(executor, tmp_path):
    """6 minute-long tasks on 2 CPUs: cancelling raises Cancelled, the 4 queued never start and no
    heartbeat moves afterwards (no task left running)."""
    token = CancelToken()
    items = [{"folder": str(tmp_path), "n": n} for n in range(6)]
    outcome: dict = {}

    def job():
        try:
            executor.run(_beat_until_cancelled, items, cancel=token)
        except Cancelled:
            outcome["cancelled"] = True

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("beat-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(tmp_path.glob("beat-*"))) == 2
    token.cancel()
    thread.join(timeout=40)
    assert not thread.is_alive() and outcome.get("cancelled")
    beats = {p.name: p.read_text() for p in tmp_path.glob("beat-*")}
    time.sleep(0.5)
    assert {p.name: p.read_text() for p in tmp_path.glob("beat-*")} == beats, "a cancelled task still runs"
    assert len(beats) == 2, "a queued task started after the cancel"


def _die_on_first_attempt(shared, item, context):
    """A task whose first attempt kills its own worker (as an OOM kill or a crash would)."""
    mark = Path(item["folder"]) / f"tried-{item['n']}"
    if item["n"] in item["doomed"] and (item["always"] or not mark.exists()):
        mark.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return item["n"] * 10


@pytest.mark.parametrize("always", [False, True], ids=["retried", "failed"])
def test_killed_worker_is_reported_retried_or_failed(cluster, tmp_path, always):
    """Task 1 kills its worker: once, it is resubmitted and finishes (reported as retried); every
    time, it is given up after the retries (reported as failed) while the others finish."""
    from crystal_studio.jobs.executors import RayExecutor

    executor = RayExecutor(retries=1)
    items = [{"folder": str(tmp_path), "n": n, "doomed": [1], "always": always} for n in range(4)]
    got: dict[int, int] = {}
    messages: list[str] = []
    report = executor.run(_die_on_first_attempt, items, on_result=got.__setitem__, notify=messages.append)
    if always:
        assert sorted(got) == [0, 2, 3] and set(report.failed) == {1} and report.done == 3
        assert "lost 2 times" in report.failed[1] and not report.complete
    else:
        assert got == {0: 0, 1: 10, 2: 20, 3: 30} and report.retried == {1: 1} and report.complete
    assert any("task 2 lost" in m for m in messages)
