"""Training throughput of the property GNN on CPU (issue 8): graph building and s/epoch.

Reads mp_mtcgcnn_33k (gemmi fast path), takes a seeded subset, builds the neighbour lists, then runs
``--epochs`` training epochs of one ensemble member with the project's own loop
(:class:`~crystal_studio.ml.training.EnsembleTrainer`) and times each (training pass only, then the
validation pass separately). Prints one JSON line per result on stdout; progress on stderr.

    .venv/bin/python benchmarks/train_throughput.py --subset 3000 --epochs 2 --threads 1
    .venv/bin/python benchmarks/train_throughput.py --subset 0 --epochs 1 --threads 1   # all 33k

``--graphs-cache FILE`` saves the built graphs (or loads them when the file exists) so repeated
measurements skip parsing and neighbour lists. ``--label`` tags the JSON lines (e.g. before/after).
Skips cleanly (one JSON line with "skipped") when the dataset is absent.
"""

from __future__ import annotations

import argparse
import json
import os
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
    print(json.dumps({"benchmark": "train_throughput", **doc}), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_cif(text: str):
    """A pymatgen Structure from CIF text: gemmi's fast path for P1 CIFs, pymatgen otherwise."""
    import gemmi
    from pymatgen.core import Structure

    from crystal_studio.core.io import fast_cif_structure

    structure = fast_cif_structure(gemmi.cif.read_string(text).sole_block())
    return structure if structure is not None else Structure.from_str(text, fmt="cif")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load_graphs(args, split_ids, build_graphs, unsupported_elements):
    """{"train", "val"} graph lists and the build timings (from the cache file when present)."""
    import pandas as pd
    import torch

    from crystal_studio.ml.batching import CrystalGraph

    if args.graphs_cache and args.graphs_cache.is_file():
        doc = torch.load(args.graphs_cache, weights_only=False)
        graphs = {k: [CrystalGraph(**g) for g in v] for k, v in doc["graphs"].items()}
        return graphs, {**doc["timings"], "from_cache": True}
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
    split = split_ids(list(range(len(structures))), (0.9, 0.1, 0.0), args.seed)
    log(f"parsed {len(structures)} structures in {parse_s:.1f} s")
    t0 = time.perf_counter()
    graphs = {key: build_graphs([structures[i] for i in split[key]], args.cutoff, y[split[key]])
              for key in ("train", "val")}
    graph_s = time.perf_counter() - t0
    timings = {"parse_s": round(parse_s, 2), "neighbour_lists_s": round(graph_s, 2),
               "structures": len(structures)}
    if args.graphs_cache:
        torch.save({"graphs": {k: [vars(g) for g in v] for k, v in graphs.items()}, "timings": timings},
                   args.graphs_cache)
    return graphs, {**timings, "from_cache": False}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--subset", type=int, default=3000, help="random structures to use (0: all)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--n-gaussians", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--graphs-cache", type=Path, default=None)
    parser.add_argument("--label", default="")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of one epoch")
    args = parser.parse_args()

    if not args.data.is_file() and not (args.graphs_cache and args.graphs_cache.is_file()):
        emit({"skipped": f"{args.data} not present"})
        return 0

    import torch

    from crystal_studio.ml.batching import build_graphs
    from crystal_studio.ml.data import split_ids
    from crystal_studio.ml.elements import unsupported_elements
    from crystal_studio.ml.runtime import set_threads
    from crystal_studio.ml.training import EnsembleTrainer, TrainConfig, model_config_for, target_normalization

    warnings.filterwarnings("ignore")
    set_threads(args.threads)
    graphs, timings = load_graphs(args, split_ids, build_graphs, unsupported_elements)
    train, val = graphs["train"], graphs["val"]
    config = TrainConfig(targets=TARGETS, epochs=max(args.epochs, 2), seed=args.seed, batch_size=args.batch_size,
                         hidden=args.hidden, layers=args.layers, cutoff=args.cutoff, n_gaussians=args.n_gaussians,
                         device="cpu", threads=args.threads)
    y = torch.stack([g.y for g in train]).double().numpy()
    mean, std = target_normalization(y, TARGETS)
    model_config = model_config_for(config, train)
    n_atoms = sum(g.n_atoms for g in train)
    n_edges = sum(int(g.center.shape[0]) for g in train)
    common = {"label": args.label, "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": platform.node(), "cpu": cpu_model(), "cores": os.cpu_count(),
              "loadavg_1m": round(os.getloadavg()[0], 2), "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "batch_size": args.batch_size, "hidden": args.hidden,
              "layers": args.layers, "cutoff": args.cutoff, "n_gaussians": args.n_gaussians}
    emit({**common, "what": "graphs", **timings, "train": len(train), "val": len(val),
          "atoms_per_crystal": round(n_atoms / len(train), 2), "edges_per_atom": round(n_edges / n_atoms, 2)})

    trainer = EnsembleTrainer(config, model_config, train, val, torch.tensor(mean, dtype=torch.float32),
                              torch.tensor(std, dtype=torch.float32), torch.device("cpu"))
    member = trainer._new_member(0)
    from crystal_studio.core.progress import CancelToken, no_progress

    cancel = CancelToken()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer._train_epoch(member, no_progress, cancel)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=35), file=sys.stderr)
        member = trainer._new_member(0)
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        metrics = trainer._train_epoch(member, no_progress, cancel)
        train_s = time.perf_counter() - t0
        cpu_s = time.process_time() - cpu0
        t0 = time.perf_counter()
        val_loss, val_mae = trainer._validate(member.model)
        val_s = time.perf_counter() - t0
        member.epoch += 1
        emit({**common, "what": "epoch", "epoch": epoch, "train": len(train), "train_s": round(train_s, 2),
              "train_cpu_s": round(cpu_s, 2), "structures_per_s": round(len(train) / train_s, 1),
              "val_s": round(val_s, 2), "val_structures_per_s": round(len(val) / val_s, 1),
              "train_loss": round(metrics["train_loss"], 6), "val_loss": round(val_loss, 6),
              "val_mae": {k: round(v, 5) for k, v in val_mae.items()},
              "loadavg_1m": round(os.getloadavg()[0], 2),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
