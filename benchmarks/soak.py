"""Soak benchmark (issue 17 item 5): repeated import → train → optimize cycles on one project, through
the real command line (one ``crystal-studio`` process per verb, small settings), for a given duration,
with the GUI's read queries running concurrently in a thread of this process.

Each cycle imports ``--structures`` synthetic perovskites and rock salts (a CSV with a cif column and
two properties) as a new dataset, trains a 2-member GNN on it, runs a SMOACS optimization against the
model, lists the candidates, and — once ``--keep`` datasets exist — deletes the oldest dataset, its
model and its runs (so a store that reuses its free pages stops growing; one that leaks keeps growing).

The reader does what the Datasets, Plots, Training and Candidates panels do, every ``--read-every`` s
on its own connection: the dataset summaries, a count and a sorted page of 100 rows of the newest
dataset, one property's values over it (the plots), the runs and models lists, and the candidates of
the newest optimization. Every read is timed.

Reported (one JSON line each, like the other benchmarks):
- ``soak.cycle`` per cycle: seconds per verb, peak RSS of each verb's process, size of the project file
  and of its write-ahead log;
- ``soak.summary``: cycles, errors (non-zero exits, reader exceptions, integrity_check; must be 0),
  store size at the first and last cycle (steady state: after the first deletion), peak RSS growth of
  the verbs from the first to the last cycles, the reader's RSS growth after its warm-up, read
  latency p50/p99/max over the whole run.

Usage:  python benchmarks/soak.py [--duration 3600] [--structures 200] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "resources" / "specs" / "smoacs_perovskite_gap_2.5eV.json"
TRAIN = ["--model", "gnn", "--targets", "formation_energy_per_atom,band_gap", "--epochs", "3", "--ensemble", "2",
         "--device", "cpu", "--batch-size", "16", "--hidden", "16", "--layers", "2", "--cutoff", "4.5",
         "--threads", "1"]


def emit(**fields) -> None:
    fields.setdefault("date", date.today().isoformat())
    fields.setdefault("machine", f"{platform.machine()} {os.cpu_count()} cores")
    print(json.dumps(fields), flush=True)


def rss_mib() -> float:
    """This process's resident set size now (MiB)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_crystals(path: Path, n: int, seed: int) -> Path:
    """``n`` distorted ABX3 perovskites and AX rock salts with smooth made-up properties (as
    tests/ml_synthetic.py), as a CSV with id, cif and two property columns."""
    import numpy as np
    from pymatgen.core import Element, Lattice, Structure
    from pymatgen.io.cif import CifWriter

    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "cif", "formation_energy_per_atom", "band_gap"])
        for k in range(n):
            a, b, x = rng.choice(["Sr", "Ba", "Ca", "K", "Na"]), rng.choice(["Ti", "Zr", "Nb", "Ta", "Sn"]), \
                rng.choice(["O", "F"])
            if k % 3 == 2:
                length = 4.2 + 0.6 * rng.random()
                s = Structure(Lattice.cubic(length), [a, x], [[0, 0, 0], [0.5, 0.5, 0.5]])
            else:
                length = 3.8 + 0.4 * rng.random()
                s = Structure(Lattice.cubic(length), [a, b, x, x, x],
                              [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
            s.perturb(0.05, min_distance=0.01)
            chi = [Element(site.specie.symbol).X for site in s]
            ef = -1.5 * float(np.std(chi)) + 0.2 * (length - 4.0)
            gap = max(0.0, 2.0 * float(np.std(chi)) + float(np.mean(chi)) - 2.5)
            writer.writerow([f"soak-{seed}-{k}", str(CifWriter(s)), ef, gap])
    return path


class Verbs:
    """Runs ``crystal-studio`` verbs as separate processes, recording exit codes, times and peak RSS."""

    def __init__(self, project: Path):
        self.project = project
        self.errors: list[str] = []

    def run(self, *args, json_out: bool = True) -> tuple[dict | None, float, float]:
        """(JSON document or None, seconds, peak RSS MiB) of one verb; a non-zero exit is an error."""
        cmd = [sys.executable, "-m", "crystal_studio", args[0], str(self.project), *map(str, args[1:])]
        if json_out:
            cmd.append("--json")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - t0
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode()
        if proc.returncode != 0 or "Traceback" in stderr:
            self.errors.append(f"{args[0]} exited {proc.returncode}: {stderr.strip()[-400:]}")
            return None, seconds, usage.ru_maxrss / 1024
        doc = json.loads(stdout) if json_out and stdout.strip() else None
        return doc, seconds, usage.ru_maxrss / 1024


class Reader(threading.Thread):
    """The GUI's read queries on the project, every ``every`` seconds, timed (see the module docstring)."""

    def __init__(self, project: Path, every: float):
        super().__init__(daemon=True)
        self.path, self.every = project, every
        self.latencies: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.rss: list[tuple[float, float]] = []  # (time, MiB)
        self.stop = threading.Event()

    def timed(self, name: str, fn):
        t0 = time.perf_counter()
        value = fn()
        self.latencies.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)
        return value

    def run(self) -> None:
        from crystal_studio.store import candidates as candidate_store
        from crystal_studio.store import models as model_store
        from crystal_studio.store.project import Project, StructureQuery

        project = Project.open(self.path, migrate=False)
        start = time.perf_counter()
        while not self.stop.is_set():
            try:
                summaries = self.timed("datasets", project.datasets)
                if summaries:
                    query = StructureQuery(dataset=summaries[-1].name, sort="band_gap", descending=True)
                    self.timed("count", lambda q=query: project.count(q))
                    self.timed("page", lambda q=query: project.page(q, 0, 100))
                    self.timed("property_values", lambda q=query: project.property_values("band_gap", q))
                runs = self.timed("runs", lambda: model_store.list_runs(project))
                self.timed("models", lambda: model_store.list_models(project))
                done = [r for r in runs if r.kind == "optimization" and r.status == "completed"]
                if done:
                    self.timed("candidates", lambda r=done[-1].id: candidate_store.list_candidates(project, r))
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none may happen
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.rss.append((time.perf_counter() - start, rss_mib()))
            self.stop.wait(self.every)
        project.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600, help="seconds of cycles (the last one finishes)")
    parser.add_argument("--structures", type=int, default=200, help="structures imported per cycle")
    parser.add_argument("--keep", type=int, default=3, help="datasets kept; older ones are deleted")
    parser.add_argument("--read-every", type=float, default=0.25, help="seconds between rounds of reads")
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the project (default: a temp one)")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    folder = Path(tmp.name) if tmp else args.workdir
    folder.mkdir(parents=True, exist_ok=True)
    project = folder / "soak.sqlite"
    verbs = Verbs(project)
    verbs.run("new", json_out=False)
    reader = Reader(project, args.read_every)
    reader.start()
    began, cycle, cycles = time.perf_counter(), 0, []
    datasets: list[tuple[str, int | None, list[int]]] = []  # (name, model id, its training and optimization runs)
    while time.perf_counter() - began < args.duration:
        cycle += 1
        row = {"cycle": cycle}
        name = f"cycle{cycle}"
        data = write_crystals(folder / f"{name}.csv", args.structures, seed=cycle)
        _, row["import_s"], row["import_rss_mib"] = verbs.run("import", data, "--dataset", name, json_out=False)
        data.unlink()
        doc, row["train_s"], row["train_rss_mib"] = verbs.run("train", "--dataset", name, *TRAIN, "--seed", cycle)
        model_id = doc["model_id"] if doc else None
        runs = [doc["run_id"]] if doc else []
        datasets.append((name, model_id, runs))
        if model_id is not None:
            doc, row["optimize_s"], row["optimize_rss_mib"] = verbs.run(
                "optimize", "--spec", SPEC, "--method", "smoacs", "--models", model_id, "--candidates", 16,
                "--steps", 30, "--seed", cycle, "--device", "cpu")
            if doc:
                runs.append(doc["run_id"])
                row["candidates"] = doc["n_candidates"]
                _, row["candidates_s"], _ = verbs.run("candidates", "--run", doc["run_id"])
        if len(datasets) > args.keep:
            old, old_model, old_runs = datasets.pop(0)
            for run_id in old_runs:
                verbs.run("delete", "--run", run_id, "--yes", json_out=False)
            if old_model is not None:
                verbs.run("delete", "--model", old_model, "--yes", json_out=False)
            verbs.run("delete", "--dataset", old, "--yes", json_out=False)
        row["store_mib"] = round(project.stat().st_size / 2**20, 2)  # the project file itself
        wal = project.with_name(project.name + "-wal")
        row["wal_mib"] = round(wal.stat().st_size / 2**20, 2) if wal.exists() else 0.0  # SQLite's log, reused
        row["elapsed_s"] = round(time.perf_counter() - began, 1)
        row["errors"] = len(verbs.errors) + len(reader.errors)
        cycles.append(row)
        emit(benchmark="soak.cycle", **{k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
    reader.stop.set()
    reader.join()

    with sqlite3.connect(project) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0]
    conn.close()
    errors = verbs.errors + reader.errors + ([f"integrity_check: {integrity}"] if integrity != "ok" else []) + \
        ([f"{running} run(s) left 'running'"] if running else [])
    steady = [r for r in cycles if r["cycle"] > args.keep + 1] or cycles

    def growth(key: str) -> dict:
        values = [r[key] for r in cycles if key in r]
        if len(values) < 4:
            return {"first": values[0] if values else None, "last": values[-1] if values else None}
        k = max(1, len(values) // 4)
        return {"first_quarter_median": round(statistics.median(values[:k]), 1),
                "last_quarter_median": round(statistics.median(values[-k:]), 1), "max": round(max(values), 1)}

    warm = [m for t, m in reader.rss if t >= min(120.0, 0.1 * args.duration)] or [m for _, m in reader.rss]
    reads = [v for values in reader.latencies.values() for v in values]
    emit(benchmark="soak.summary", duration_s=round(time.perf_counter() - began, 1), cycles=len(cycles),
         structures_per_cycle=args.structures, errors=len(errors), error_messages=errors[:10],
         integrity_check=integrity,
         store_mib={"after_first_cycle": cycles[0]["store_mib"] if cycles else None,
                    "steady_first": steady[0]["store_mib"] if steady else None,
                    "last": cycles[-1]["store_mib"] if cycles else None,
                    "max": max((r["store_mib"] for r in cycles), default=None)},
         verb_peak_rss_mib={v: growth(f"{v}_rss_mib") for v in ("import", "train", "optimize")},
         verb_seconds={v: growth(f"{v}_s") for v in ("import", "train", "optimize")},
         reader_rss_mib={"after_warmup": round(warm[0], 1) if warm else None,
                         "last": round(warm[-1], 1) if warm else None, "max": round(max(warm), 1) if warm else None},
         reads=len(reads),
         read_latency_ms={"p50": round(percentile(reads, 0.5), 2), "p99": round(percentile(reads, 0.99), 2),
                          "max": round(max(reads, default=float("nan")), 1)},
         read_latency_ms_by_query={name: {"n": len(v), "p50": round(percentile(v, 0.5), 2),
                                          "p99": round(percentile(v, 0.99), 2), "max": round(max(v), 1)}
                                   for name, v in reader.latencies.items()},
         self_peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
         note="machine shared with other engineers' builds and tests while it ran")
    if tmp:
        tmp.cleanup()
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
