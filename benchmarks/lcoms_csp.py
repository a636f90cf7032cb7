"""LCOMs crystal structure prediction benchmark (issue 12 item 8), CHGNet as the simulator.

    .venv/bin/python benchmarks/lcoms_csp.py --project P.sqlite --out DIR --stage STAGE [options]

Stages (each resumable: finished work is read back from the project or ``DIR``):

- ``data``: the ``polymorphs`` job on TRAINING formulas (related binaries and elements; none of the 25
  test formulas, so every polymorph of a test formula is held out) → dataset 'polymorphs';
- ``reference``: each test formula's Materials Project ground state (lowest formation energy in
  ``../shared/data/mp_mtcgcnn_33k.csv.gz``, primitive cell), relaxed by CHGNet → ``DIR/reference.jsonl``
  (used for evaluation only);
- ``train``: a csp_vae (VAE + conservative and MSE surrogates) on 'polymorphs' (``--set`` options);
- ``run``: for each test formula and method (random, lcoms, mse) one ``csp`` run with ``--n`` CHGNet
  relaxations and starts of the ground state's atom count (``max_atoms`` = its primitive cell) →
  ``DIR/runs.jsonl``; lcoms and mse share their starts (same seed), which are random's first half;
- ``report``: per compound success (StructureMatcher match with the relaxed ground state, or CHGNet
  energy within 10 meV/atom of it), totals, the true-energy improvement from start to decode (LCOMs'
  Figure 3, as a text histogram) and the surrogates' own predicted improvement beside it, JSON lines.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import re
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mp_mtcgcnn_33k.csv.gz"
TEST = ("LiF NaF KF RbF LiCl NaCl KCl RbCl CsCl BeO MgO CaO SrO BaO ZnO CdO BeS MgS CaS SrS BaS ZnS CdS "
        "C Si").split()
TRAIN = ("LiBr NaBr KBr RbBr CsBr LiI NaI KI RbI CsI CsF BeSe MgSe CaSe SrSe BaSe ZnSe CdSe MgTe CaTe SrTe "
         "BaTe ZnTe CdTe Ge Sn SiC GaN AlN GaP AlP GaAs").split()
METHODS = ("random", "lcoms", "mse")
TOLERANCE = 0.010  # eV/atom


def emit(**fields) -> None:
    fields.update(date=date.today().isoformat(), machine=f"{platform.node()} {platform.processor() or platform.machine()}")
    print(json.dumps(fields), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def append_jsonl(path: Path, doc: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(doc, default=float) + "\n")


def stage_data(project, args) -> None:
    from crystal_studio.design.polymorphs import generate_polymorphs

    assert not set(TRAIN) & set(TEST)
    result = generate_polymorphs(project, TRAIN, "polymorphs", per_formula=args.per_formula, frames=args.frames,
                                 seed=0, max_atoms=args.train_max_atoms, relax_steps=args.relax_steps, fmax=0.05,
                                 device="cpu", progress=lambda e: log(e.message) if e.step % 10 == 0 else None)
    emit(kind="polymorph_data", formulas=len(TRAIN), rows=result.n_rows, relaxed=result.n_relaxed,
         existing=result.n_existing, wall_s=round(result.wall_s, 1), rate_per_min=round(result.rate_per_min, 1))


def _formula_of(cif: str) -> str | None:
    from pymatgen.core import Composition

    match = re.search(r"_chemical_formula_sum\s+'?([^'\n]+)'?", cif)
    return Composition(match.group(1)).reduced_formula if match else None


def stage_reference(project, args) -> None:
    import csv

    from pymatgen.core import Structure

    from crystal_studio.oracles.chgnet_oracle import ChgnetOracle

    out = Path(args.out) / "reference.jsonl"
    done = {d["formula"] for d in read_jsonl(out)}
    best: dict[str, tuple[float, str, str]] = {}
    csv.field_size_limit(10 ** 8)
    with gzip.open(DATA, "rt") as fh:
        for row in csv.DictReader(fh):
            formula = _formula_of(row["cif"])
            if formula in TEST and formula not in done:
                ef = float(row["formation_energy_per_atom"])
                if formula not in best or ef < best[formula][0]:
                    best[formula] = (ef, row["id"], row["cif"])
    oracle = ChgnetOracle("cpu")
    for formula in TEST:
        if formula in done:
            continue
        if formula not in best:
            log(f"{formula}: not in the MP set")
            continue
        ef, mp_id, cif = best[formula]
        structure = Structure.from_str(cif, fmt="cif").get_primitive_structure()
        [relaxation] = oracle.relax([structure], fmax=0.02, max_steps=500)
        doc = {"formula": formula, "mp_id": mp_id, "formation_energy_per_atom": ef, "nsites": len(structure),
               "energy_per_atom": float(relaxation.energy_per_atom), "converged": bool(relaxation.converged),
               "structure": relaxation.final.as_dict()}
        append_jsonl(out, doc)
        log(f"{formula}: {mp_id} {len(structure)} sites, CHGNet {relaxation.energy_per_atom:.4f} eV/atom")


def stage_train(project, args) -> None:
    from crystal_studio.core.options import parse_assignments
    from crystal_studio.ml.kinds import config_for
    from crystal_studio.ml.training import train_model

    settings = {"device": "cpu", "max_sites": args.train_max_atoms, **parse_assignments(args.set or [])}
    config = config_for("csp_vae", [], **{k: _number(v) for k, v in settings.items()})
    start = time.perf_counter()
    result = train_model(project, "polymorphs", config, "csp VAE (LCOMs benchmark)",
                         lambda e: log(e.message) if e.step % 10 == 0 else None)
    emit(kind="csp_vae_training", model_id=result.model_id, wall_s=round(time.perf_counter() - start, 1),
         message=result.message, metrics=result.metrics["csp"])


def _number(text):
    if not isinstance(text, str):
        return text
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def stage_run(project, args) -> None:
    from crystal_studio.design.csp import predict_structures
    from crystal_studio.store import candidates as candidate_store

    out = Path(args.out) / "runs.jsonl"
    references = {d["formula"]: d for d in read_jsonl(Path(args.out) / "reference.jsonl")}
    done = {(d["formula"], d["method"]) for d in read_jsonl(out)}
    methods = args.methods.split(",")
    for formula in (args.formulas.split(",") if args.formulas else TEST):
        if formula not in references:
            log(f"{formula}: no reference (run --stage reference)")
            continue
        for method in methods:
            if (formula, method) in done:
                continue
            models = [args.model] if method != "random" else []
            start = time.perf_counter()
            result = predict_structures(project, [formula], args.n, models, seed=args.seed,
                                        max_atoms=min(references[formula]["nsites"], args.train_max_atoms),
                                        relax_steps=args.relax_steps,
                                        fmax=0.05, device="cpu", method=method,
                                        lcoms={"steps": args.steps} if method != "random" else None)
            outcome = result.formulas[0]
            doc = {"formula": formula, "method": method, "run_id": result.run_id, "status": outcome.status,
                   "reason": outcome.reason, "energy_per_atom": outcome.energy_per_atom,
                   "spacegroup": outcome.spacegroup, "best_from": outcome.best_from,
                   "improvements": outcome.improvements, "n_relaxed": outcome.n_relaxed,
                   "wall_s": round(time.perf_counter() - start, 1)}
            if outcome.candidate_id is not None:
                [record] = [c for c in candidate_store.list_candidates(project, result.run_id)
                            if c.id == outcome.candidate_id]
                doc["structure"] = record.structure.as_dict()
                lat = record.evaluation.get("csp", {}).get("lcoms")
                if lat:
                    doc["best_lcoms"] = lat
            doc["surrogate_changes"] = _surrogate_changes(project, result.run_id) if method != "random" else []
            append_jsonl(out, doc)
            log(f"{formula} {method}: {outcome.energy_per_atom} eV/atom {outcome.spacegroup} "
                f"({outcome.best_from}) in {doc['wall_s']} s")


def _surrogate_changes(project, run_id: int) -> list[float]:
    """Per latent step, the mean surrogate energy (eV/atom) — first and last give its own predicted gain."""
    from crystal_studio.store import models as model_store

    return [value for _, value in model_store.run_metrics(project, run_id).get("lcoms/surrogate_mean", [])]


def stage_report(project, args) -> None:
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    references = {d["formula"]: d for d in read_jsonl(Path(args.out) / "reference.jsonl")}
    runs = read_jsonl(Path(args.out) / "runs.jsonl")
    matcher = StructureMatcher()
    totals = {m: 0 for m in METHODS}
    counted = {m: 0 for m in METHODS}
    table = {}
    for doc in runs:
        ref = references[doc["formula"]]
        success, matched, delta = False, False, None
        if doc.get("structure"):
            delta = doc["energy_per_atom"] - ref["energy_per_atom"]
            matched = bool(matcher.fit(Structure.from_dict(doc["structure"]), Structure.from_dict(ref["structure"])))
            success = bool(matched or delta <= TOLERANCE)
        counted[doc["method"]] += 1
        totals[doc["method"]] += success
        table.setdefault(doc["formula"], {})[doc["method"]] = (success, matched, delta, doc["wall_s"])
        emit(kind="csp_compound", formula=doc["formula"], method=doc["method"], success=success, matched=matched,
             delta_ev_per_atom=delta, spacegroup=doc["spacegroup"], best_from=doc["best_from"],
             improvements=doc["improvements"], wall_s=doc["wall_s"])
    for method in METHODS:
        if counted[method]:
            improvements = [x for d in runs if d["method"] == method for x in d["improvements"]]
            own = [d["surrogate_changes"][0] - d["surrogate_changes"][-1] for d in runs
                   if d["method"] == method and d.get("surrogate_changes")]
            emit(kind="csp_total", method=method, successes=totals[method], compounds=counted[method],
                 mean_surrogate_predicted_drop=(sum(own) / len(own)) if own else None,
                 mean_true_improvement=(sum(improvements) / len(improvements)) if improvements else None,
                 share_improved=(sum(x > 0 for x in improvements) / len(improvements)) if improvements else None,
                 n_decodes=len(improvements))
    log("formula  " + "  ".join(f"{m:>18}" for m in METHODS))
    for formula, row in table.items():
        cells = []
        for m in METHODS:
            if m in row:
                s, matched, delta, wall = row[m]
                cells.append(f"{'✔' if s else '✘'}{'m' if matched else ' '} {delta if delta is None else f'{delta:+.3f}'}"
                             f" {wall:5.0f}s")
            else:
                cells.append(" " * 18)
        log(f"{formula:8} " + "  ".join(f"{c:>18}" for c in cells))
    for method in ("lcoms", "mse"):
        values = [x for d in runs if d["method"] == method for x in d["improvements"]]
        if values:
            log(f"{method}: true-energy improvement start → decode (eV/atom), {len(values)} decodes")
            edges = [-float("inf"), -0.3, -0.1, -0.03, -0.01, 0.01, 0.03, 0.1, 0.3, float("inf")]
            for lo, hi in zip(edges[:-1], edges[1:], strict=True):
                n = sum(lo <= x < hi for x in values)
                log(f"  [{lo:+.2f}, {hi:+.2f})  {'#' * n} {n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stage", required=True, choices=("data", "reference", "train", "run", "report"))
    parser.add_argument("--per-formula", type=int, default=8, help="data: random crystals per training formula")
    parser.add_argument("--frames", type=int, default=3, help="data: relaxation frames stored per crystal")
    parser.add_argument("--train-max-atoms", type=int, default=8)
    parser.add_argument("--relax-steps", type=int, default=200)
    parser.add_argument("--set", action="append", help="train: csp_vae setting NAME=VALUE")
    parser.add_argument("--model", type=int, help="run: the csp_vae model id")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--formulas", default="", help="run: comma-separated subset of the test formulas")
    parser.add_argument("--n", type=int, default=8, help="run: CHGNet relaxations per compound and method")
    parser.add_argument("--steps", type=int, default=50, help="run: LCOMs latent steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from crystal_studio.store.project import Project

    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.project)
    project = Project.open(path) if path.exists() else Project.create(path)
    {"data": stage_data, "reference": stage_reference, "train": stage_train, "run": stage_run,
     "report": stage_report}[args.stage](project, args)


if __name__ == "__main__":
    main()
