"""Court et al. voxel benchmark on the cubic perovskites perov_5 (issue 14, item 5).

    .venv/bin/python benchmarks/court_voxel.py --project /tmp/court.sqlite [--n-train 1000] [--grid 16]
        [--epochs 20] [--unet-epochs 10] [--samples 1000] [--bases 10] [--threads 2] [--device cpu]

Imports the first ``--n-train`` crystals of the shared perov_5 file (``../shared/data/perov_5.csv.gz``,
which holds CDVAE's 3,787-crystal validation split of perov_5)
into dataset 'perov' (once; an existing project is reused), trains a conditional voxel VAE on them
conditioned on deciles of ``heat_of_formation_all`` (the U-Net stage first), then prints one JSON
line per measurement on stdout:

- ``training``: settings, wall time and the held-out validation split's reconstruction from latent
  means — lattice-length MAE (Å; paper 0.06 Å at 32³), mean atom-position error (Å, over crystals
  decoded with their composition; paper 0.09 Å), the share decoded with the right composition, and
  the U-Net's occupied-voxel accuracy and the share of true maps it segments into the right composition;
- ``random``: ``--samples`` draws from N(0, I) under uniformly drawn deciles: structural validity
  (paper 76 %), the funnel (paper per 1,000: 1000 → 890 valid → 350 same stoichiometry → 250 novel →
  60 within 20 % of the target Ef → 20 unique) and the time per
  1,000 candidates (paper: 12,000 in 12 h on one GPU);
- ``targeted``: ``--samples`` draws in all around ``--bases`` validation crystals (σ² = 0.5, each base
  under its own decile): validity (paper 89 %) and the summed funnel;
- ``predictor``: with ``--predictor-epochs`` > 0 (default 40), a GNN predictor of the condition property
  trained on the same crystals first (its validation MAE is reported), which adds the paper's stage
  "within 20 % of the target" to both funnels (target: the decile's median, or the base's value).

The resolution is the point to read first: on a CPU this runs at 16³ (voxel ≈ 0.25 Å for a 4 Å cell)
on a subset, where the paper trained at 32³ on the whole set on a GPU.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "perov_5.csv.gz"
CONDITION = "heat_of_formation_all"


def emit(**fields) -> None:
    fields.update(date=date.today().isoformat(), machine=f"{platform.node()} {platform.processor() or platform.machine()}")
    print(json.dumps(fields), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare(path: Path, n_train: int):
    """The project at ``path`` with the first ``n_train`` perov_5 crystals as dataset 'perov'."""
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    if path.exists():
        return Project.open(path)
    if not DATA.exists():
        sys.exit(f"{DATA} is missing: this benchmark needs the shared perov_5 set")
    csv.field_size_limit(10 ** 8)
    subset = path.with_suffix(".subset.csv")
    with gzip.open(DATA, "rt", newline="") as fh, open(subset, "w", newline="") as out:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(out, fieldnames=["id", "cif", CONDITION])
        writer.writeheader()
        kept = 0
        for row in reader:
            if kept == n_train:
                break
            writer.writerow({"id": row["id"], "cif": row["cif"], CONDITION: row[CONDITION]})
            kept += 1
    project = Project.create(path)
    report = import_paths(project, [subset], "perov")
    subset.unlink()
    log(f"imported {report.imported} perov_5 crystals ({report.skipped} skipped)")
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--grid", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--latent", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--unet-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--bases", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--predictor-epochs", type=int, default=40)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    import numpy as np

    from crystal_studio.design.sampling import VOXEL_FUNNEL, VOXEL_TARGET_FUNNEL, sample_model
    from crystal_studio.ml.kinds import config_for
    from crystal_studio.ml.training import train_model

    project = prepare(args.project, args.n_train)
    config = config_for("voxel_vae", [], grid=args.grid, hidden=args.hidden, latent=args.latent, epochs=args.epochs,
                        unet_epochs=args.unet_epochs, batch_size=args.batch_size, condition=CONDITION,
                        prior_samples=256, threads=args.threads, device=args.device, seed=args.seed)
    started = time.perf_counter()
    result = train_model(project, "perov", config, f"court voxel VAE {args.grid}^3",
                         lambda event: log(event.message) if event.metrics else None)
    seconds = time.perf_counter() - started
    held_out = result.metrics["voxel"]
    emit(part="training", grid=args.grid, n_train=held_out["n_train"], n_val=held_out["n_val"], epochs=args.epochs,
         unet_epochs=args.unet_epochs, hidden=args.hidden, latent=args.latent, device=args.device,
         train_seconds=round(seconds, 1), message=result.message,
         length_mae_angstrom=held_out.get("val_length_mae"), position_error_angstrom=held_out.get("val_position_error"),
         composition_recovery=held_out["val_decoded_composition_recovery"],
         unet_occupied_accuracy=held_out["val_occupied_accuracy"],
         unet_composition_recovery=held_out["val_composition_recovery"], prior_validity_256=held_out["val_prior_validity"])

    target_model = None
    if args.predictor_epochs > 0:
        started = time.perf_counter()
        predictor = train_model(project, "perov", config_for("gnn", [CONDITION], epochs=args.predictor_epochs, ensemble=2,
                                                             threads=args.threads, device=args.device,
                                                             seed=args.seed), f"{CONDITION} GNN")
        target_model = predictor.model_id
        emit(part="predictor", model_id=target_model, epochs=args.predictor_epochs,
             train_seconds=round(time.perf_counter() - started, 1), val_metrics=predictor.val_metrics)

    started = time.perf_counter()
    random = sample_model(project, result.model_id, args.samples, seed=args.seed, device=args.device,
                          target_model=target_model)
    seconds = time.perf_counter() - started
    emit(part="random", n=args.samples, validity=random.validity, funnel=random.funnel, failures=random.failures,
         seconds_per_1000=round(1000 * seconds / args.samples, 1))

    from crystal_studio.store import models as model_store

    validation_ids = model_store.get_model(project, result.model_id).hyperparameters["training"]["val_ids"]
    rng = np.random.default_rng(args.seed)
    bases = [int(i) for i in rng.choice(validation_ids, size=min(args.bases, len(validation_ids)), replace=False)]
    per_base = max(1, args.samples // len(bases))
    totals = dict.fromkeys(VOXEL_FUNNEL if target_model is None else VOXEL_TARGET_FUNNEL, 0)
    valid = 0.0
    started = time.perf_counter()
    for base in bases:
        summary = sample_model(project, result.model_id, per_base, seed=args.seed + base, around=base,
                               sigma=math.sqrt(0.5), device=args.device, target_model=target_model)
        for stage, count in summary.funnel.items():
            totals[stage] += count
        valid += summary.validity * per_base
    seconds = time.perf_counter() - started
    emit(part="targeted", bases=bases, n=per_base * len(bases), sigma_squared=0.5,
         validity=valid / (per_base * len(bases)), funnel=totals,
         seconds_per_1000=round(1000 * seconds / (per_base * len(bases)), 1))
    project.close()


if __name__ == "__main__":
    main()
