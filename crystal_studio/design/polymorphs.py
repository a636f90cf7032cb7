"""Polymorph datasets: many CHGNet local minima per composition, for crystal structure prediction training.

LCOMs trains a composition-conditioned crystal VAE and an energy surrogate on *many* local minima per
composition, which Materials Project data does not give. :func:`generate_polymorphs` makes them: for each
formula, ``per_formula`` random symmetric crystals (PyXtal, see :func:`crystal_studio.design.csp.random_crystal`;
space groups that hold Z formula units in at most ``max_atoms`` atoms), each relaxed by CHGNet with a free
cell (FIRE, ``fmax`` eV/Å, at most ``relax_steps`` steps) and stored as a row of a dataset with properties

- ``energy_per_atom``: CHGNet energy, eV/atom;
- ``relaxed``: 1.0 for the final structure of a relaxation, 0.0 for an intermediate frame;
- ``relax_converged``: 1.0 when that relaxation met ``fmax`` within ``relax_steps``, else 0.0.

With ``frames`` = K > 0 a relaxation also stores up to K intermediate snapshots spread evenly along its
trajectory (the first is the generated crystal), with the energies CHGNet computed there.

Row names are deterministic: ``NaCl/s0/t3`` is trial 3 (0-based) of NaCl with seed 0, ``NaCl/s0/t3/f1`` its
second frame. Trial t draws from its own generator seeded by (seed, formula, t), so a trial is the same crystal
whatever ran before it. That makes the job resumable: a trial whose row is already in the dataset is skipped,
and each relaxed trial (final row and frames) is committed in one transaction, so running the same call again
after a cancel or a crash continues where it stopped and never leaves half a trial.

Each call is one stored run of kind ``polymorphs`` (parameters, seed, device, versions; one metric row per
relaxed trial), so ``crystal-studio runs`` lists it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

from crystal_studio.core import structures as cs
from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.io import ParsedRecord
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.core.tasks import Executor, LocalExecutor, Shared, TaskContext, task_resources
from crystal_studio.design.csp import (
    _distinct,
    _rng,
    _target,
    _version,
    random_crystal,
    relax_one,
    space_groups_for,
)
from crystal_studio.ml import runtime
from crystal_studio.oracles.chgnet_oracle import chgnet_threads
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project, StructureQuery

RUN_KIND = "polymorphs"
PROPERTIES = ("energy_per_atom", "relaxed", "relax_converged")


@dataclass
class PolymorphFormula:
    """What became of one formula. ``status``: 'ok' (every trial is in the dataset), 'partial' (some trials
    failed, see ``failures``) or 'failed' (none is, ``reason`` says why)."""

    formula: str  # reduced formula (the input text when it has none)
    input: str  # as given
    status: str = "pending"
    reason: str = ""
    n_trials: int = 0  # trials asked for (per_formula)
    n_generated: int = 0  # random crystals PyXtal made in this call
    n_relaxed: int = 0  # of which CHGNet relaxed (and were stored)
    n_stored: int = 0  # rows stored in this call: relaxed structures and frames
    n_frames: int = 0  # of which intermediate frames
    n_existing: int = 0  # trials skipped because their row was already in the dataset
    failures: list[str] = field(default_factory=list)  # one per failed trial, with the reason
    energies: list[float] = field(default_factory=list)  # eV/atom of the structures relaxed in this call

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class PolymorphResult:
    """Outcome of :func:`generate_polymorphs`. Times in seconds; rates per minute of ``relax_s``."""

    run_id: int
    dataset: str
    formulas: list[PolymorphFormula]
    n_rows: int  # rows stored in this call (relaxed structures + frames)
    n_relaxed: int  # relaxations done in this call
    n_existing: int  # trials skipped as already stored
    wall_s: float  # the whole call, CHGNet loading included
    relax_s: float  # generating, relaxing and storing the trials
    rate_per_min: float  # relaxed structures per minute of relax_s
    rows_per_min: float  # stored rows per minute of relax_s

    @property
    def failed(self) -> list[PolymorphFormula]:
        """Formulas with nothing in the dataset."""
        return [f for f in self.formulas if f.status == "failed"]

    @property
    def incomplete(self) -> list[PolymorphFormula]:
        """Formulas missing some trials ('failed' or 'partial')."""
        return [f for f in self.formulas if f.status != "ok"]

    def as_json(self) -> dict:
        doc = asdict(self)
        doc["formulas"] = [f.as_json() for f in self.formulas]
        return doc


def trial_name(formula: str, seed: int, trial: int, frame: int | None = None) -> str:
    """Row name of trial ``trial`` (0-based) of ``formula`` (reduced) with ``seed``, or of its frame ``frame``."""
    name = f"{formula}/s{seed}/t{trial}"
    return name if frame is None else f"{name}/f{frame}"


def stored_names(project: Project, dataset: str) -> set[str]:
    """Names of the rows of ``dataset`` (empty when there is no such dataset)."""
    if dataset not in project.dataset_names():
        return set()
    query = StructureQuery(dataset=dataset)
    return {row["name"] for row in project.page(query, limit=max(1, project.count(query)), with_properties=False)}


def generate_polymorphs(project: Project, formulas: list[str], dataset: str, per_formula: int = 8, frames: int = 0,
                        seed: int = 0, max_atoms: int = 12, relax_steps: int = 150, fmax: float = 0.1,
                        device: str = "auto", progress: ProgressCallback = no_progress,
                        cancel: CancelToken | None = None, executor: Executor | None = None) -> PolymorphResult:
    """Store ``per_formula`` CHGNet-relaxed random symmetric crystals of each of ``formulas`` (and, with
    ``frames`` > 0, up to that many intermediate frames of each relaxation) as rows of ``dataset``
    (created if new); see the module docstring for the rows, their names and their properties.

    ``max_atoms``: most atoms in a generated conventional cell (the stored primitive cell may be smaller);
    ``relax_steps``: most FIRE steps per relaxation; ``fmax``: force criterion, eV/Å; ``device``: auto, cpu
    or cuda. Trials already in the dataset are skipped (resume). A formula that cannot be done (unknown
    element, more atoms per formula unit than ``max_atoms``, PyXtal or CHGNet failing) is reported in its
    :class:`PolymorphFormula`; a string that is not a formula is a CrystalStudioError naming it (before
    anything is stored). Cancelling raises Cancelled after marking the run cancelled; the trials committed
    so far stay, and the same call again does the rest. Progress: one event per trial, with the running
    rate (relaxed structures per minute).

    Each trial to do is a task of ``executor`` (default: here, one after another; on Ray, in parallel on
    the cluster): a pure function that generates and relaxes one crystal and returns its rows, which
    this process alone stores, one trial per transaction. A trial lost with its worker more often than
    Ray retries it is counted as a failed trial (rerun the call to do it).
    """
    from crystal_studio.ml.runtime import package_versions

    started = time.perf_counter()
    cancel = cancel or CancelToken()
    if not formulas:
        raise CrystalStudioError("give at least one formula (--formula F, repeatable)")
    if not isinstance(dataset, str) or not dataset.strip():
        raise CrystalStudioError("give the dataset to store the polymorphs in (--dataset NAME)")
    dataset = dataset.strip()
    if per_formula < 1:
        raise CrystalStudioError(f"--per-formula must be at least 1 (got {per_formula})")
    if frames < 0:
        raise CrystalStudioError(f"--frames must be 0 or more (got {frames})")
    if max_atoms < 1:
        raise CrystalStudioError(f"--max-atoms must be at least 1 (got {max_atoms})")
    if relax_steps < 1 or not (math.isfinite(fmax) and fmax > 0):
        raise CrystalStudioError("--relax-steps must be at least 1 and --fmax a positive number")
    targets = _distinct([_target(text, max_atoms) for text in formulas])
    executor = executor or LocalExecutor()
    task_device = runtime.task_device(executor, device)
    parameters = {"formulas": list(formulas), "dataset": dataset, "per_formula": per_formula, "frames": frames,
                  "seed": seed, "max_atoms": max_atoms, "relax_steps": relax_steps, "fmax": fmax,
                  "n_steps": per_formula * sum(1 for t in targets if not t.problem)}
    versions = package_versions()
    versions["pyxtal"] = _version("pyxtal")
    versions["chgnet"] = _version("chgnet")
    run_id = model_store.create_run(project, RUN_KIND, parameters, seed, task_device, versions)
    model_store.announce_run(run_id, progress)
    outcomes = [PolymorphFormula(t.formula, t.text, "failed" if t.problem else "pending", t.problem, per_formula)
                for t in targets]
    outcomes_by = {o.formula: o for o in outcomes}
    job = _Job(project, run_id, dataset, parameters, progress, cancel)
    existing = stored_names(project, dataset)

    def cancelled_message() -> str:
        return (f"cancelled after storing {job.trials} trials ({job.rows} rows) in dataset '{dataset}'; "
                "run the same command again to continue (stored trials are skipped)")

    with model_store.guarded_run(project, run_id, cancelled_message):
        job.t0 = time.perf_counter()
        items = []
        for target, outcome in zip(targets, outcomes, strict=True):
            if not target.problem:
                items += job.trials_to_do(target, outcome, existing)
        if items:
            def store(index: int, result: dict) -> None:
                job.store(items[index], result, outcomes_by[items[index]["formula"]], existing)

            shared = executor.share({"parameters": parameters, "device": task_device, "run_id": run_id})
            try:
                report = executor.run(polymorph_task, items, shared, task_resources(executor, task_device), store,
                                      cancel, progress)
            finally:
                shared.release()
            for index, why in sorted(report.failed.items()):  # lost with their workers more often than retried
                item = items[index]
                outcomes_by[item["formula"]].failures.append(f"trial {item['trial']}: task lost ({why})")
        relax_s = time.perf_counter() - job.t0
        for outcome in outcomes:
            if outcome.status == "pending":
                done = outcome.n_relaxed + outcome.n_existing
                outcome.status = "ok" if done == per_formula else ("partial" if done else "failed")
                if outcome.failures:
                    outcome.reason = f"{len(outcome.failures)} of {per_formula} trials failed ({outcome.failures[0]})"
        ok = sum(o.status == "ok" for o in outcomes)
        model_store.update_run(project, run_id, status="completed",
                               message=f"{job.trials} trials ({job.rows} rows) stored in dataset '{dataset}', "
                                       f"{sum(o.n_existing for o in outcomes)} already there; {ok} of "
                                       f"{len(outcomes)} formulas complete")
    minutes = relax_s / 60.0
    return PolymorphResult(run_id, dataset, outcomes, job.rows, job.trials, sum(o.n_existing for o in outcomes),
                           time.perf_counter() - started, relax_s, job.trials / minutes if minutes > 0 else 0.0,
                           job.rows / minutes if minutes > 0 else 0.0)


class _Job:
    """The trials of one polymorph run: generation, relaxation, storing, progress and metric rows."""

    def __init__(self, project: Project, run_id: int, dataset: str, parameters: dict, progress: ProgressCallback,
                 cancel: CancelToken):
        self.project, self.run_id, self.dataset, self.parameters = project, run_id, dataset, parameters
        self.progress, self.cancel = progress, cancel
        self.total = parameters["n_steps"]
        self.done = 0  # trials handled (stored, skipped or failed)
        self.trials = 0  # relaxed trials stored
        self.rows = 0  # rows stored
        self.t0 = time.perf_counter()

    @property
    def rate(self) -> float:
        """Relaxed structures per minute so far."""
        elapsed = time.perf_counter() - self.t0
        return self.trials * 60.0 / elapsed if elapsed > 0 else 0.0

    def report(self, message: str, metrics: dict[str, float] | None = None) -> None:
        self.done += 1
        if metrics:
            model_store.record_metrics(self.project, self.run_id, self.trials - 1, metrics)
        self.progress(ProgressEvent(min(self.done, self.total), self.total,
                                    f"{message} ({self.rate:.1f} structures/min)", metrics or {}))

    def trials_to_do(self, target, outcome: PolymorphFormula, existing: set[str]) -> list[dict]:
        """The tasks of ``target``'s trials not stored yet; stored ones are counted and reported."""
        p = self.parameters
        n, todo = p["per_formula"], []
        for t in range(n):
            name = trial_name(target.formula, p["seed"], t)
            if name in existing:
                outcome.n_existing += 1
                self.report(f"{target.formula}: trial {t + 1}/{n} already stored")
            else:
                todo.append({"formula": target.formula, "species": list(target.species),
                             "counts": list(target.counts), "trial": t, "name": name})
        if not todo:
            return []
        holders = space_groups_for(tuple(target.counts), p["max_atoms"])
        if not holders:  # P1 holds any composition, so only a PyXtal without space groups gets here
            outcome.failures.append(f"no space group holds {target.formula} in {p['max_atoms']} atoms")
            self.done += len(todo) - 1
            self.report(f"{target.formula}: no space group")
            return []
        return [{**item, "holders": holders} for item in todo]

    def store(self, item: dict, result: dict, outcome: PolymorphFormula, existing: set[str]) -> None:
        """Store one finished trial (its rows in one transaction) or count its failure."""
        formula, t, n, p = item["formula"], item["trial"], self.parameters["per_formula"], self.parameters
        if result.get("generated"):
            outcome.n_generated += 1
        if "failure" in result:
            outcome.failures.append(result["failure"])
            what = "relaxation failed" if result.get("generated") else "not generated"
            self.report(f"{formula}: trial {t + 1}/{n} {what}")
            return
        records = result["records"]
        with self.project.transaction() as db:  # a trial's final row and its frames, together or not at all
            stored = self.project.insert_records(
                db, self.dataset, records, source="polymorphs (PyXtal random crystals relaxed by CHGNet)",
                description=f"random symmetric crystals relaxed by CHGNet (run {self.run_id}), "
                            "energy_per_atom in eV/atom",
                metadata={"kind": RUN_KIND, "run_id": self.run_id,
                          **{k: p[k] for k in ("seed", "max_atoms", "relax_steps", "fmax", "frames")}})
        existing.add(item["name"])
        energy = records[0].properties["energy_per_atom"]
        converged = records[0].properties["relax_converged"]
        outcome.n_relaxed += 1
        outcome.n_stored += stored
        outcome.n_frames += stored - 1
        outcome.energies.append(energy)
        self.trials += 1
        self.rows += stored
        self.report(f"{formula}: trial {t + 1}/{n} {energy:.3f} eV/atom, space group {result['spacegroup']}, "
                    f"{records[0].info.nsites} sites{'' if converged else ', not converged'}",
                    {"energy_per_atom": energy, "converged": converged, "rows": float(stored),
                     "rate_per_min": self.rate})


def polymorph_task(shared: Shared, item: dict, context: TaskContext) -> dict:
    """Generate and relax one trial (a task: a pure function of its inputs and the job's parameters).
    Returns ``{"generated", "records", "spacegroup"}``, or ``{"generated", "failure"}`` with the reason
    when PyXtal cannot make the crystal or the relaxation fails."""
    from crystal_studio.ml.runtime import resolve_device
    from crystal_studio.oracles.chgnet_oracle import ChgnetOracle

    payload = shared.get()
    p, device = payload["parameters"], resolve_device(payload["device"])
    t, formula = item["trial"], item["formula"]
    try:
        generated, number, z = random_crystal(item["species"], item["counts"], item["holders"],
                                              _rng(p["seed"], f"{formula}/t{t}"))
    except RuntimeError as exc:
        return {"generated": False, "failure": f"trial {t}: {exc}"}
    oracle = shared.derived("chgnet", lambda: ChgnetOracle(str(device)))
    with chgnet_threads(device):
        try:
            relaxation = relax_one(oracle, generated, p["fmax"], p["relax_steps"], context.cancel, p["frames"])
        except RuntimeError as exc:
            return {"generated": True, "failure": f"trial {t} (space group {number}): {exc}"}
    converged = float(relaxation.converged)
    meta = {"run_id": str(payload["run_id"]), "formula": formula, "seed": str(p["seed"]), "trial": str(t),
            "generated_spacegroup_number": str(number), "z": str(z),
            "generated_nsites": str(len(generated)), "fire_steps": str(relaxation.steps),
            "max_force": f"{relaxation.max_force:.6g}"}
    try:
        records = [_record(item["name"], relaxation.final, relaxation.energy_per_atom, 1.0, converged, meta)]
    except ValueError as exc:  # e.g. the cell blew up
        return {"generated": True, "failure": f"trial {t} (space group {number}): relaxed structure cannot be "
                                              f"stored: {exc}"}
    for k, (structure, energy) in enumerate(relaxation.frames):
        if not math.isfinite(energy):
            continue
        try:
            records.append(_record(f"{item['name']}/f{k}", structure, energy, 0.0, converged, {**meta, "frame": str(k)}))
        except ValueError:  # a frame that cannot be stored is left out; the trial is not
            continue
    return {"generated": True, "records": records, "spacegroup": number}


def _record(name: str, structure, energy: float, relaxed: float, converged: float, meta: dict[str, str]
            ) -> ParsedRecord:
    """A row of the dataset (ValueError when the structure cannot be stored, see core.structures)."""
    structure = cs.check_structure(structure)
    return ParsedRecord(f"polymorphs run {meta['run_id']}", name, cs.to_json(structure), cs.describe(structure),
                        {"energy_per_atom": float(energy), "relaxed": relaxed, "relax_converged": converged},
                        meta)
