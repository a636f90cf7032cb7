"""Composition VAE checks as in El-Awady's paper, on the shared Materials Project set.

    .venv/bin/python benchmarks/composition_vae.py --work /tmp/cvae-work [--seeds 0 1 2] [--set recon_weight=100]

For each seed: train a composition VAE on the dataset's distinct formulas (classes from this dataset's
hull), draw --n formulas from the prior and report, one JSON line per seed:

- element-prevalence KL divergence KL(data ‖ samples) over the share of formulas containing each
  element (paper: 0.08), beside the same KL between the training and validation formulas (the floor
  sampling noise alone gives at that validation size);
- the distribution of the number of elements, data vs samples;
- validity funnel (SMACT compositional validity, uniqueness, novelty);
- latent decomposition similarity: cosine between an unstable compound's latent mean and the
  fraction-weighted sum of its decomposition products' means, by number of products, beside the same
  cosine with another compound's products (shuffled baseline);
- training time and validation reconstruction.

The work project (import + hull) is reused between runs. A plot of the element-count distributions
goes to --plot when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mp_mtcgcnn_33k.csv.gz"
DATASET = "mp"


def prepared_project(work: Path, data: Path):
    from crystal_studio.store.derived import compute_dataset_hull, decompositions
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    work.mkdir(parents=True, exist_ok=True)
    path = work / "cvae.sqlite"
    project = Project.open(path) if path.exists() else Project.create(path)
    if DATASET not in project.dataset_names():
        t = time.perf_counter()
        import_paths(project, [data], DATASET)
        print(f"imported in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if not decompositions(project, DATASET):
        hull = compute_dataset_hull(project, DATASET)
        print(f"hull: {hull.as_json()}", file=sys.stderr)
    return project


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-6) -> float:
    """KL(p ‖ q) of two non-negative vectors normalized to distributions (eps keeps empty bins finite)."""
    p = (p + eps) / (p + eps).sum()
    q = (q + eps) / (q + eps).sum()
    return float(np.sum(p * np.log(p / q)))


def element_count_distribution(formulas, weights=None) -> dict[int, float]:
    from pymatgen.core import Composition

    counts = Counter()
    for k, formula in enumerate(formulas):
        counts[len(Composition(formula).elements)] += 1 if weights is None else weights[k]
    total = sum(counts.values())
    return {n: counts[n] / total for n in sorted(counts)}


def decomposition_similarity(project, model, rng) -> dict:
    """Cosine of μ(compound) with Σ w μ(products) per number of products, and a shuffled baseline."""
    import torch

    from crystal_studio.core.formulas import fraction_vector
    from crystal_studio.ml.elements import ELEMENTS
    from crystal_studio.store.derived import decompositions

    index = {s: i for i, s in enumerate(ELEMENTS)}
    formula_of = {r["id"]: r["reduced_formula"] for r in project.page(
        _query(), limit=project.count(_query()), with_properties=False)}
    items = []
    for sid, record in decompositions(project, DATASET).items():
        if record.n_components < 2 or sid not in formula_of:
            continue
        items.append((formula_of[sid], [(p["formula"], p["fraction"]) for p in record.products], record.n_components))
    names = sorted({f for f, _, _ in items} | {p for _, products, _ in items for p, _ in products})
    try:
        vectors = np.stack([fraction_vector(f, ELEMENTS, index) for f in names])
    except KeyError:
        return {}
    with torch.no_grad():
        mu, _ = model.encode(torch.as_tensor(vectors, dtype=torch.float32))
    mu = mu.numpy()
    where = {f: k for k, f in enumerate(names)}

    def cosine(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    def mixed(products):
        return sum(w * mu[where[p]] for p, w in products)

    shuffled = rng.permutation(len(items))
    by_count: dict[int, list[tuple[float, float]]] = {}
    for k, (formula, products, n) in enumerate(items):
        other = items[shuffled[k]][1]
        by_count.setdefault(min(n, 4), []).append((cosine(mu[where[formula]], mixed(products)),
                                                   cosine(mu[where[formula]], mixed(other))))
    out = {}
    for n, pairs in sorted(by_count.items()):
        true, base = np.array(pairs).T
        out[f"{n}{'+' if n == 4 else ''}"] = {"n": len(pairs), "cosine_mean": float(true.mean()),
                                             "cosine_median": float(np.median(true)),
                                             "shuffled_mean": float(base.mean())}
    return out


def _query():
    from crystal_studio.store.project import StructureQuery

    return StructureQuery(dataset=DATASET)


def run_seed(project, seed: int, settings: dict, n: int) -> dict:
    from crystal_studio.core.options import apply_options
    from crystal_studio.design.sampling import element_prevalence, sample_model
    from crystal_studio.ml.composition_training import load_formulas
    from crystal_studio.ml.elements import ELEMENTS
    from crystal_studio.ml.kinds import config_for, get_kind
    from crystal_studio.ml.predictor import load_state
    from crystal_studio.ml.training import train_model
    from crystal_studio.store import models as model_store
    from crystal_studio.store.samples import list_samples

    config = apply_options(config_for("composition_vae", [], seed=seed, device="cpu"), settings, "composition_vae")
    t = time.perf_counter()
    result = train_model(project, DATASET, config, f"benchmark seed {seed}")
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    summary = sample_model(project, result.model_id, n, seed=seed, device="cpu")
    sample_s = time.perf_counter() - t

    data = load_formulas(project, DATASET, config.max_classes)
    record = model_store.get_model(project, result.model_id)
    model = get_kind("composition_vae").load().rebuild(record.hyperparameters, [], load_state(
        record.checkpoint, "model"), "model")
    samples = [s for s in list_samples(project, summary.run_id) if s.checks["compositionally_valid"]]
    sampled = [s.formula for s in samples]
    weights = [s.count for s in samples]
    p_data = element_prevalence(data.formulas, ELEMENTS)
    p_samples = np.zeros(len(ELEMENTS))
    for formula, w in zip(sampled, weights, strict=True):
        p_samples += w * element_prevalence([formula], ELEMENTS)
    p_samples /= max(sum(weights), 1)
    val_share = config.val_share
    order = np.random.default_rng(seed).permutation(len(data.formulas))
    n_val = max(1, round(val_share * len(data.formulas)))
    train_formulas = [data.formulas[k] for k in order[n_val:]]
    val_formulas = [data.formulas[k] for k in order[:n_val]]
    floor = kl_divergence(element_prevalence(train_formulas, ELEMENTS), element_prevalence(val_formulas, ELEMENTS))
    composition = result.metrics["composition"]
    return {
        "benchmark": "composition_vae", "seed": seed, "settings": settings, "n_formulas": len(data.formulas),
        "train_s": round(train_s, 1), "epochs_run": record.hyperparameters["training"]["epochs_run"],
        "val_formula_accuracy": composition["val_formula_accuracy"],
        "val_class_accuracy": composition.get("val_class_accuracy"),
        "val_reconstruction_nats": composition["val_reconstruction"], "val_kl_nats": composition["val_kl"],
        "n_samples": n, "sample_s": round(sample_s, 1),
        "element_prevalence_kl": kl_divergence(p_data, p_samples),
        "element_prevalence_kl_train_vs_val": floor,
        "element_counts_data": element_count_distribution(data.formulas),
        "element_counts_samples": element_count_distribution(sampled, weights) if sampled else {},
        "compositional_validity": summary.compositional_validity, "unique_rate": summary.unique_rate,
        "novel_rate": summary.novel_rate, "funnel": summary.funnel,
        "decomposition_similarity": decomposition_similarity(project, model, np.random.default_rng(seed)),
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = rows[0]["element_counts_data"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ns = sorted({int(k) for r in rows for k in r["element_counts_samples"]} | {int(k) for k in data})
    width = 0.8 / (len(rows) + 1)
    ax.bar([n - 0.4 + width / 2 for n in ns], [data.get(n, data.get(str(n), 0)) for n in ns], width, label="data")
    for k, r in enumerate(rows):
        s = r["element_counts_samples"]
        ax.bar([n - 0.4 + width * (k + 1.5) for n in ns], [s.get(n, s.get(str(n), 0)) for n in ns], width,
               label=f"samples, seed {r['seed']}")
    ax.set_xlabel("elements per formula")
    ax.set_ylabel("share of formulas")
    ax.set_xticks(ns)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, required=True, help="folder for the work project (reused)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n", type=int, default=10_000, help="formulas to sample per seed")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="composition_vae NAME=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", type=Path, help="PNG of the element-count distributions")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data} not found (the shared datasets are not beside this checkout)")
    import torch

    from crystal_studio.core.options import parse_assignments

    torch.set_num_threads(args.threads)
    settings = parse_assignments(args.settings)
    project = prepared_project(args.work, args.data)
    rows = []
    for seed in args.seeds:
        row = run_seed(project, seed, settings, args.n)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
