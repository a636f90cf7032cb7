"""Property-predictor benchmark on Materials Project data (mp_mtcgcnn_33k): formation energy and band gap.

Trains the crystal GNN with the project's own training loop on a seeded 90/10 train/test split (a
tenth of the training part is held out for early stopping), then reports test MAE/RMSE/R², wall time
per epoch and to the best epoch, peak memory, and inference throughput (structures/s), optionally
beside CHGNet's on the same structures. Prints one JSON line per result on stdout; progress on stderr.

    .venv/bin/python benchmarks/predictor.py --subset 5000 --epochs 30 --threads 1

Anchors (full data): CGCNN 0.039 eV/atom and 0.388 eV; ALIGNN-class models about 0.02 and 0.19.
Skips cleanly (one JSON line with "skipped") when the dataset is absent.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_mtcgcnn_33k.csv.gz"
TARGETS = ["formation_energy_per_atom", "band_gap"]


def emit(doc: dict) -> None:
    print(json.dumps({"benchmark": "predictor", **doc}), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_cif(text: str):
    """A pymatgen Structure from CIF text: gemmi's fast path for P1 CIFs, pymatgen otherwise."""
    import gemmi
    from pymatgen.core import Structure

    from crystal_studio.core.io import fast_cif_structure

    structure = fast_cif_structure(gemmi.cif.read_string(text).sole_block())
    return structure if structure is not None else Structure.from_str(text, fmt="cif")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--subset", type=int, default=0, help="random structures to use (0: all)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--ensemble", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chgnet", type=int, default=0, help="also time CHGNet on this many test structures")
    args = parser.parse_args()

    if not args.data.is_file():
        emit({"skipped": f"{args.data} not present"})
        return 0

    import pandas as pd
    import torch

    from crystal_studio.ml.batching import build_graphs
    from crystal_studio.ml.data import split_ids
    from crystal_studio.ml.elements import unsupported_elements
    from crystal_studio.ml.models.gnn import CrystalGNN
    from crystal_studio.ml.predictor import predict_graphs
    from crystal_studio.ml.runtime import describe_device, resolve_device, set_threads
    from crystal_studio.ml.training import (
        EnsembleTrainer,
        TrainConfig,
        assemble_predictor,
        graph_metrics,
        model_config_for,
        target_normalization,
    )

    warnings.filterwarnings("ignore")
    config = TrainConfig(targets=TARGETS, epochs=args.epochs, ensemble=args.ensemble, seed=args.seed,
                         batch_size=args.batch_size, lr=args.lr, patience=args.patience, hidden=args.hidden,
                         layers=args.layers, cutoff=args.cutoff, device=args.device, threads=args.threads,
                         split=(0.81, 0.09, 0.10))
    device = resolve_device(config.device)
    set_threads(config.threads)

    frame = pd.read_csv(args.data)
    if args.subset:
        frame = frame.sample(n=min(args.subset, len(frame)), random_state=args.seed)
    t0 = time.perf_counter()
    structures, labels = [], []
    for cif, ef, gap in zip(frame["cif"], frame[TARGETS[0]], frame[TARGETS[1]], strict=True):
        structure = parse_cif(cif)
        if not unsupported_elements(el.symbol for el in structure.composition.elements):
            structures.append(structure)
            labels.append((ef, gap))
    parse_s = time.perf_counter() - t0
    y = np.array(labels, dtype=np.float64)
    split = split_ids(list(range(len(structures))), config.split, config.seed)
    log(f"parsed {len(structures)} structures in {parse_s:.0f} s; split {[len(v) for v in split.values()]}")

    t0 = time.perf_counter()
    graphs = {key: build_graphs([structures[i] for i in ids], config.cutoff, y[ids]) for key, ids in split.items()}
    graph_s = time.perf_counter() - t0
    mean, std = target_normalization(y[split["train"]], TARGETS)
    model_config = model_config_for(config, graphs["train"])
    trainer = EnsembleTrainer(config, model_config, graphs["train"], graphs["val"], torch.tensor(mean),
                              torch.tensor(std), device)
    n_params = sum(p.numel() for p in CrystalGNN(model_config).parameters())
    emit({"what": "setup", "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.node(),
          "platform": platform.platform(), "device": describe_device(device), "torch": torch.__version__,
          "structures": len(structures), "split": {k: len(v) for k, v in split.items()},
          "edges_per_atom": round(model_config.avg_neighbors, 2), "parameters": n_params,
          "parse_s": round(parse_s, 1), "neighbour_lists_s": round(graph_s, 1), "config": config.as_dict()})

    epoch_times: list[float] = []
    last = [time.perf_counter()]

    def progress(event) -> None:
        if "val_loss" in event.metrics:
            now = time.perf_counter()
            epoch_times.append(now - last[0])
            last[0] = now
            maes = " ".join(f"{k.split('/')[1]}={v:.4f}" for k, v in event.metrics.items() if k.startswith("val_mae"))
            log(f"{event.message} ({epoch_times[-1]:.1f} s) {maes}")

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    members, infos = trainer.fit(progress)
    train_s = time.perf_counter() - t0
    predictor = assemble_predictor(model_config, TARGETS, members, mean, std).to(device)
    metrics = graph_metrics(predictor, graphs["test"], 2 * config.batch_size)
    for target, m in metrics.items():
        emit({"what": "test_metrics", "target": target, **m})
    best = [i["best_epoch"] for i in infos]
    emit({"what": "training_time", "epochs_run": [i["epochs"] for i in infos], "best_epoch": best,
          "s_per_epoch": round(float(np.mean(epoch_times)), 2), "s_to_best_epoch": round(
              sum(epoch_times[:best[0]]), 1), "s_total": round(train_s, 1),
          "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
          "peak_gpu_mib": round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None})

    test_structures = [structures[i] for i in split["test"]]
    t0 = time.perf_counter()
    predict_graphs(predictor, build_graphs(test_structures, config.cutoff), 2 * config.batch_size)
    gnn_s = time.perf_counter() - t0
    emit({"what": "inference", "model": f"gnn x{config.ensemble}", "structures": len(test_structures),
          "structures_per_s": round(len(test_structures) / gnn_s, 1), "includes": "neighbour lists"})
    if args.chgnet:
        from crystal_studio.oracles.chgnet_oracle import ChgnetOracle

        oracle = ChgnetOracle("cuda" if device.type == "cuda" else "cpu")
        sample = test_structures[:args.chgnet]
        oracle.predict(sample[:2])  # warm-up
        t0 = time.perf_counter()
        oracle.predict(sample)
        chgnet_s = time.perf_counter() - t0
        emit({"what": "inference", "model": oracle.version, "structures": len(sample),
              "structures_per_s": round(len(sample) / chgnet_s, 1), "includes": "graph building"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
