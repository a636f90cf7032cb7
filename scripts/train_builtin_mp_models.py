"""Train the shipped Materials Project predictors with the project's own training code and write them to
resources/builtin/ (mp_gnn.pt and mp_chgnet_transfer.pt).

    .venv/bin/python scripts/train_builtin_mp_models.py --work /tmp/mp-work            # both kinds
    .venv/bin/python scripts/train_builtin_mp_models.py --work /tmp/mp-work --kinds chgnet_transfer

The data is ``mp_mtcgcnn_33k.csv.gz`` (Materials Project, CC BY 4.0; ../shared/data/ in a development
checkout). Both kinds use the same seeded 80/10/10 split (seed 0), so their test metrics compare on the
same held-out structures. Everything lives in a work project (``--work``): rerunning the script imports
nothing twice, resumes an interrupted training run from its last checkpoint and skips finished models,
so a long CPU run can span several sittings. One JSON line per model goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mp_mtcgcnn_33k.csv.gz"
DATASET = "mp_mtcgcnn_33k"
TARGETS = ["formation_energy_per_atom", "band_gap"]
OUTPUT = {"gnn": "mp_gnn.pt", "chgnet_transfer": "mp_chgnet_transfer.pt"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def throttled_progress(every_s: float = 20.0):
    last = [0.0]

    def progress(event) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or (event.metrics and "val_loss" in event.metrics):
            last[0] = now
            log(f"{event.step}/{event.total} {event.message}")

    return progress


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, required=True, help="folder for the work project (kept for resuming)")
    parser.add_argument("--kinds", default="chgnet_transfer,gnn", help="comma-separated kinds to train")
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / "builtin")
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gnn-epochs", type=int, default=30)
    parser.add_argument("--gnn-hidden", type=int, default=64)
    parser.add_argument("--gnn-layers", type=int, default=3)
    parser.add_argument("--gnn-batch-size", type=int, default=64)
    parser.add_argument("--gnn-lr", type=float, default=2e-3)
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"{args.data}: not found (the Materials Project file mp_mtcgcnn_33k.csv.gz)", file=sys.stderr)
        return 2

    from crystal_studio.core.io import ImportOptions
    from crystal_studio.ml.builtin import BUILTIN_MODELS, MP_ATTRIBUTION
    from crystal_studio.ml.predictor import export_model_file
    from crystal_studio.ml.training import TrainConfig, resume_training, train_model
    from crystal_studio.store import models as model_store
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    args.work.mkdir(parents=True, exist_ok=True)
    path = args.work / "mp.sqlite"
    project = Project.open(path) if path.exists() else Project.create(path)
    if DATASET not in project.dataset_names():
        log(f"importing {args.data}")
        import_paths(project, [args.data], DATASET, ImportOptions(), progress=throttled_progress(),
                     description="Materials Project structures with formation energies and PBE band gaps "
                                 "(MT-CGCNN collection)", metadata={"licence": "CC BY 4.0", "attribution": MP_ATTRIBUTION})
    names = {f: n for f, n in BUILTIN_MODELS}
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        name = names[OUTPUT[kind]]
        done = [m for m in model_store.list_models(project) if m.name == name]
        if not done:
            unfinished = [r for r in model_store.list_runs(project, "train")
                          if r.status != "completed" and r.parameters.get("name") == name]
            started = time.monotonic()
            if unfinished:
                log(f"resuming run {unfinished[0].id} ({name})")
                result = resume_training(project, unfinished[0].id, throttled_progress(), threads=args.threads or None)
            else:
                settings = {"ensemble": args.ensemble, "seed": args.seed, "threads": args.threads,
                            "device": args.device}
                if kind == "gnn":
                    settings.update(epochs=args.gnn_epochs, hidden=args.gnn_hidden, layers=args.gnn_layers,
                                    batch_size=args.gnn_batch_size, lr=args.gnn_lr, patience=args.gnn_epochs)
                config = TrainConfig.for_kind(kind, TARGETS, **settings)
                log(f"training {name}: {config.as_dict()}")
                result = train_model(project, DATASET, config, name, throttled_progress())
            log(f"{name}: {time.monotonic() - started:.0f} s in this sitting")
            model_id = result.model_id
        else:
            model_id = done[0].id
        target = export_model_file(project, model_id, args.out / OUTPUT[kind])
        record = model_store.get_model(project, model_id, with_checkpoint=False)
        print(json.dumps({"model": name, "kind": kind, "file": str(target.relative_to(ROOT)),
                          "bytes": target.stat().st_size, "test": record.metrics,
                          "val": record.hyperparameters.get("training", {}).get("val_metrics")}), flush=True)
    project.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
