"""SMOACS perovskite benchmark: band-gap targets 0.5 and 2.5 ± 0.2 eV, Ef < −0.5 eV/atom, neutral,
t in [0.8, 1.0], template kept — judged by the optimizing predictor and by an independent one.

Trains two predictors of (formation_energy_per_atom, band_gap) on ../shared/data/mp_mtcgcnn_33k with
the project's own training loop: the optimizer's (seed 0) and an independent judge (seed 1: another
split and initialization). Runs SMOACS and the random baseline for each target and seed through the
same optimization job the CLI uses, then re-predicts every final candidate with the judge. Prints
one JSON line per result.

    .venv/bin/python benchmarks/smoacs_perovskite.py --subset 8000 --epochs 20 --candidates 256 --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SPECS = Path(__file__).resolve().parents[1] / "resources" / "specs"
TARGET_SPECS = {"0.5 eV": "smoacs_perovskite_gap_0.5eV.json", "2.5 eV": "smoacs_perovskite_gap_2.5eV.json"}


def emit(**fields) -> None:
    fields.setdefault("date", date.today().isoformat())
    fields.setdefault("machine", f"{platform.machine()} {os.cpu_count()} cores")
    print(json.dumps({"benchmark": "smoacs_perovskite", **fields}), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def judged_summary(project, run_id, judge, spec) -> dict:
    """Summary of a run's candidates with properties re-predicted by ``judge``."""
    from crystal_studio.design.evaluation import evaluate_structure, summarize
    from crystal_studio.ml.predictor import predict_structures
    from crystal_studio.store.candidates import list_candidates

    records = list_candidates(project, run_id)
    structures = [r.structure for r in records]
    mean, _ = predict_structures(judge, structures)
    docs = []
    for record, row in zip(records, mean, strict=True):
        doc = evaluate_structure(record.structure, spec, dict(zip(judge.targets, row.tolist(), strict=True))).as_json()
        doc["unique"], doc["novel"] = record.evaluation["unique"], record.evaluation["novel"]
        docs.append(doc)
    return summarize(docs, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=8000, help="MP structures used for training (≤ 40 sites)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--project", type=Path, help="reuse a project holding trained models (see --models)")
    parser.add_argument("--models", default="1,2", help="with --project: optimizer and judge model ids")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    data = SHARED / "mp_mtcgcnn_33k.csv.gz"
    if not data.exists():
        emit(skipped=f"{data} not present")
        return

    import pandas as pd
    import torch

    from crystal_studio.design.job import run_optimization
    from crystal_studio.design.spec import load_spec
    from crystal_studio.ml.predictor import load_predictor
    from crystal_studio.ml.training import TrainConfig, train_model
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    if args.threads:
        torch.set_num_threads(args.threads)
    targets = ["formation_energy_per_atom", "band_gap"]
    if args.project:
        project = Project.open(args.project)
        model_ids = [int(m) for m in args.models.split(",")]
    else:
        folder = Path(tempfile.mkdtemp(prefix="smoacs-bench-"))
        frame = pd.read_csv(data)
        frame = frame[frame.cif.str.count("\n") < 60].sample(n=args.subset, random_state=0)
        frame.to_csv(folder / "mp.csv.gz", index=False)
        project = Project.create(folder / "bench.sqlite")
        import_paths(project, [folder / "mp.csv.gz"], "mp")
        model_ids = []
        for seed in (0, 1):
            t0 = time.perf_counter()
            result = train_model(project, "mp", TrainConfig(targets=targets, epochs=args.epochs, seed=seed,
                                                            device=args.device, threads=args.threads))
            model_ids.append(result.model_id)
            emit(result="predictor", role="optimizer" if seed == 0 else "judge", seed=seed, subset=args.subset,
                 epochs=args.epochs, seconds=round(time.perf_counter() - t0, 1),
                 test_mae={t: round(m["mae"], 4) for t, m in result.metrics.items()}, project=str(project.path))
    _, judge = load_predictor(project, model_ids[1])
    for label, spec_file in TARGET_SPECS.items():
        spec = load_spec(SPECS / spec_file)
        for method in ("smoacs", "random"):
            for seed in [int(s) for s in args.seeds.split(",")]:
                t0 = time.perf_counter()
                result = run_optimization(project, spec, method, [model_ids[0]], args.candidates, args.steps, seed,
                                          args.device)
                seconds = time.perf_counter() - t0
                by_judge = judged_summary(project, result.run_id, judge, spec)
                emit(target=label, method=method, seed=seed, candidates=args.candidates, steps=args.steps,
                     seconds=round(seconds, 1),
                     candidate_steps_per_s=round(args.candidates * args.steps / seconds, 1),
                     peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                     optimizer_judge={"success": round(result.summary["success_rate"], 3),
                                      **{k: round(v, 3) for k, v in result.summary["criteria"].items()}},
                     independent_judge={"success": round(by_judge["success_rate"], 3),
                                        **{k: round(v, 3) for k, v in by_judge["criteria"].items()}},
                     unique_rate=round(result.summary["unique_rate"], 3))
                log(f"{label} {method} seed {seed}: success {result.summary['success_rate']:.2f} "
                    f"(independent judge {by_judge['success_rate']:.2f}) in {seconds:.0f} s")


if __name__ == "__main__":
    main()
