"""Crystal-LSBO benchmark on the shared Materials Project set (issue 11, item 5).

    .venv/bin/python benchmarks/lsbo.py --project P.sqlite --vaes 12,13,14 [--parts a,b,c] [--relax 3]

The project holds dataset 'mp' (mp_mtcgcnn_33k) and crystal VAEs trained on it (one per seed, ids in
seed order; `crystal-studio train P --dataset mp --model crystal_vae --set targets=...`). One JSON line
per measurement on stdout:

(a) ``reconstruction``: the VAE's held-out validation split (element accuracy per occupied slot,
    lattice MAE Å / degrees, coordinate RMSE Å) and the validity of 1,000 decodes from N(0, I), both
    field-standard (all distances ≥ 0.5 Å, volume ≥ 0.1 Å³) and the paper's lenient "a CIF can be
    written";
(b) ``electronegativity``: maximize the exact mean Pauling electronegativity of the decoded crystal in
    100 iterations (q = 1) with lsbo (default trust radius, and the paper's whole box), lca-lsbo and
    latent-random — no predictor involved;
(c) ``formation_energy``: minimize the formation energy predicted by the shipped MP GNN ensemble
    within 1,000 black-box calls (100 iterations × q = 10) through the optimization job, top-3
    re-predicted by the independent CHGNet-transfer ensemble and relaxed with CHGNet.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("lsbo", "lca-lsbo", "latent-random")
EF = "formation_energy_per_atom"
MINIMIZE_EF = {"version": 1, "name": "Lowest formation energy (Crystal-LSBO task c)",
               "objectives": [{"property": EF, "kind": "minimize", "weight": 1.0}],
               "constraints": {"charge_neutral": False, "template": {"kind": "free"}, "min_distance": 0.5}}


def emit(**fields) -> None:
    fields.update(date=date.today().isoformat(), machine=f"{platform.node()} {platform.processor() or platform.machine()}")
    print(json.dumps(fields), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_vae(project, model_id: int):
    from crystal_studio.design.job import load_generator

    return load_generator(project, "lsbo", model_id, "cpu")


def part_a(project, vae_id: int, seed: int) -> None:
    from pymatgen.io.cif import CifWriter

    from crystal_studio.ml.crystal_vae_training import prior_validity

    record, vae = load_vae(project, vae_id)
    held_out = record.metrics["crystal"]
    valid, failures = prior_validity(vae, 1000, 1000 + seed)
    import torch

    z = torch.randn((1000, vae.config.latent), generator=torch.Generator().manual_seed(1000 + seed))
    structures, _ = vae.decode(z)
    writable = 0
    for s in structures:
        try:
            if s is not None and str(CifWriter(s)):
                writable += 1
        except (ValueError, TypeError):
            pass
    emit(part="reconstruction", seed=seed, vae=vae_id, n_train=held_out["n_train"], n_val=held_out["n_val"],
         element_accuracy=round(held_out["val_element_accuracy"], 3),
         site_count_accuracy=round(held_out["val_site_count_accuracy"], 3),
         length_mae_angstrom=round(held_out["val_length_mae"], 3), angle_mae_degrees=round(held_out["val_angle_mae"], 2),
         coord_rmse_angstrom=round(held_out["val_coord_rmse_angstrom"], 3),
         prior_validity_field_standard=valid, prior_validity_cif_writable=writable / 1000,
         prior_failures=dict(failures))


def part_b(project, vae_id: int, seed: int, iterations: int) -> None:
    from crystal_studio.design.methods import MethodRequest
    from crystal_studio.design.methods.lca_lsbo import retrainer
    from crystal_studio.design.methods.lsbo import seed_pool
    from crystal_studio.design.optimizers.lsbo import (
        LatentSearch,
        LatentSearchConfig,
        LCAConfig,
        LSBOConfig,
        RandomLatentSearch,
        mean_electronegativity,
    )

    variants = {"lsbo": LSBOConfig(), "lsbo whole box (paper)": LSBOConfig(trust_radius=0.0), "lca-lsbo": LCAConfig(),
                "latent-random": LatentSearchConfig()}
    for method, config in variants.items():
        record, vae = load_vae(project, vae_id)  # fresh: LCA retrains its VAE
        request = MethodRequest(None, None, project, 10, iterations, seed, "cpu", record.dataset, vae, record)
        retrain = retrainer(request, config) if method == "lca-lsbo" else None
        cls = RandomLatentSearch if method == "latent-random" else LatentSearch
        config.validate()
        search = cls(None, mean_electronegativity, vae, seed_pool(request, config.init_pool), 10, iterations, seed,
                     config, retrain, ["mean_electronegativity"])
        t0 = time.perf_counter()
        search.initialize()
        seeds_best = search.loop.best_score()
        for step in range(1, iterations + 1):
            search.step(step)
        best = search.best_observations(1)[0]
        emit(part="electronegativity", method=method, seed=seed, vae=vae_id, iterations=iterations,
             dataset_pool_best=round(search.dataset_best, 4), decoded_seeds_best=round(seeds_best, 4),
             best_found=round(best.score, 4), best_formula=best.structure.composition.reduced_formula,
             best_origin=best.origin, improved_over_seeds=best.score > seeds_best + 1e-9,
             valid_query_share=round(search.loop.valid_share(), 3), retrainings=search.loop.retrainings,
             seconds=round(time.perf_counter() - t0, 1))
        log(f"(b) {method} seed {seed}: {seeds_best:.3f} -> {best.score:.3f} ({best.structure.composition.reduced_formula})")


def part_c(project, vae_id: int, seed: int, iterations: int, batch: int, relax: int, settings: dict,
           methods: tuple[str, ...] = METHODS) -> None:
    from crystal_studio.design.job import run_optimization
    from crystal_studio.design.relaxation import relax_candidates
    from crystal_studio.design.spec import spec_from_dict
    from crystal_studio.ml.builtin import ensure_builtin_models
    from crystal_studio.store import models as model_store
    from crystal_studio.store.candidates import list_candidates

    shipped = ensure_builtin_models(project)
    ids = {m.name: m.id for m in model_store.list_models(project) if m.id in shipped}
    optimizer, judge = ids["Materials Project GNN ensemble"], ids["Materials Project CHGNet-transfer ensemble"]
    from crystal_studio.store.project import StructureQuery

    dft_best = min(v for _, v in project.property_values(EF, StructureQuery(dataset="mp")))
    for method in methods:
        t0 = time.perf_counter()
        result = run_optimization(project, spec_from_dict(MINIMIZE_EF), method, [optimizer], 3, iterations, seed, "cpu",
                                  "mp", settings={"batch": batch, **(settings if method != "latent-random" else {})},
                                  judge_model=judge, generator_model=vae_id)
        seconds = time.perf_counter() - t0
        records = list_candidates(project, result.run_id)
        metrics = model_store.run_metrics(project, result.run_id)
        scale = float(model_store.get_model(project, optimizer).normalization[EF]["std"])
        fields = dict(part="formation_energy", method=method, seed=seed, vae=vae_id, calls=iterations * batch,
                      run_id=result.run_id, seconds=round(seconds, 1), settings=settings,
                      dataset_pool_best_predicted=round(metrics["loss/dataset_best"][-1][1] * scale, 3),
                      top3_predicted=[round(r.evaluation["properties"][EF], 3) for r in records],
                      top3_judge=[round(r.evaluation["judge"]["properties"][EF], 3) for r in records],
                      top3_formulas=[r.formula for r in records],
                      top3_compositionally_valid=[r.evaluation["compositionally_valid"] for r in records],
                      valid_query_share=round(metrics["rate/valid_queries"][-1][1], 3), dataset_dft_best=dft_best)
        if relax:
            relaxed = relax_candidates(project, result.run_id, candidate_ids=[r.id for r in records][:relax],
                                       device="cpu", max_steps=300)
            fields["relaxation"] = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                                     if k in ("volume_change", "rmsd", "max_displacement", "energy_per_atom",
                                              "converged", "steps")} for r in relaxed]
        emit(**fields)
        log(f"(c) {method} seed {seed}: top3 own {fields['top3_predicted']} judge {fields['top3_judge']} "
            f"in {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--vaes", required=True, help="comma-separated crystal VAE ids, one per seed (seed 0 first)")
    parser.add_argument("--seeds", help="comma-separated seeds of the --vaes (default 0, 1, …)")
    parser.add_argument("--parts", default="a,b,c")
    parser.add_argument("--methods", default=",".join(METHODS), help="latent methods of (c)")
    parser.add_argument("--iterations-b", type=int, default=100)
    parser.add_argument("--iterations-c", type=int, default=100)
    parser.add_argument("--batch-c", type=int, default=10)
    parser.add_argument("--relax", type=int, default=3, help="top candidates relaxed with CHGNet in (c)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="LSBO setting NAME=VALUE for (c), repeatable")
    args = parser.parse_args()
    import torch

    from crystal_studio.store.project import Project

    torch.set_num_threads(args.threads)
    project = Project.open(args.project)
    parts = args.parts.split(",")
    vaes = [int(v) for v in args.vaes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(range(len(vaes)))
    for seed, vae_id in zip(seeds, vaes, strict=True):
        torch.manual_seed(seed)
        if "a" in parts:
            part_a(project, vae_id, seed)
        if "b" in parts:
            part_b(project, vae_id, seed, args.iterations_b)
        if "c" in parts:
            part_c(project, vae_id, seed, args.iterations_c, args.batch_c, args.relax,
                   dict(pair.split("=", 1) for pair in args.set), tuple(args.methods.split(",")))


if __name__ == "__main__":
    main()
