"""Design verbs of the command line: ``methods``, ``optimize``, ``candidates``, ``relax``, ``sample``,
``samples`` and ``csp``.

:func:`register` adds them to the main typer app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from crystal_studio.cli import cluster
from crystal_studio.cli.cluster import ExecutorOpt, RayAddressOpt, RayCpusOpt, chosen_executor, report_tasks
from crystal_studio.cli.common import (
    EXIT_PARTIAL,
    EXIT_USAGE,
    JsonOpt,
    ProjectArg,
    emit_json,
    err,
    open_project,
    out,
    parse_ids,
    say,
)
from crystal_studio.core.errors import CrystalStudioError

RunOpt = Annotated[int, typer.Option(help="Optimization run id.")]
OnlySuccessOpt = Annotated[bool, typer.Option(help="Only candidates meeting every criterion.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]


def _print_summary(summary: dict) -> None:
    judge = summary.get("judge")
    table = Table(title="run summary", title_justify="left")
    table.add_column("criterion")
    table.add_column("optimizer's model", justify="right")
    if judge:
        table.add_column(f"judge (model {judge['model_id']})", justify="right")
    for name, value in summary["criteria"].items():
        table.add_row(name, f"{value:.1%}", *([f"{judge['criteria'][name]:.1%}"] if judge else []))
    for name in ("valid_rate", "compositional_validity", "unique_rate", "novel_rate", "success_rate"):
        label = Text(name, style="bold") if name == "success_rate" else name
        table.add_row(label, f"{summary[name]:.1%}", *([f"{judge[name]:.1%}"] if judge else []))
    err.print(table)


def optimize(
    project: ProjectArg,
    spec: Annotated[Path | None, typer.Option(help="Design spec (JSON/YAML), e.g. resources/specs/*.json.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated model ids (see 'crystal-studio models').")] = None,
    method: Annotated[str, typer.Option(help="A registered method ('crystal-studio methods' lists them).")] = "smoacs",
    candidates: Annotated[int, typer.Option(help="Number of candidates.")] = 256,
    steps: Annotated[int, typer.Option(help="Optimization steps.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: DeviceOpt = "auto",
    dataset: Annotated[str | None, typer.Option(
        help="Dataset to screen (screen) and to judge novelty against (default: the model's training set).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Method setting NAME=VALUE, repeatable (e.g. --set geometry=free --set caution=1); "
                      "'crystal-studio methods' lists them.")] = None,
    judge: Annotated[int | None, typer.Option(
        help="Independent model id that re-predicts every final candidate; its verdict is stored beside "
             "the optimizer's own.")] = None,
    generator: Annotated[int | None, typer.Option(
        help="Crystal VAE model id whose latent space the latent methods (lsbo, lca-lsbo, latent-random) "
             "search.")] = None,
    repeat: Annotated[int | None, typer.Option(
        help="Run this stored optimization again from its stored parameters (other options are ignored "
             "except --device).")] = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_cpus: RayCpusOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Optimize crystals toward a spec; stores per-step metrics and evaluated candidates as a run.

    With --executor ray, 'screen' predicts the dataset in chunks as Ray tasks (the stored run is the
    same as without); the other methods run in one process ('sweep --executor ray' spreads many runs)."""
    from crystal_studio.core.options import parse_assignments
    from crystal_studio.design.job import repeat_optimization, run_optimization
    from crystal_studio.design.spec import load_spec
    from crystal_studio.jobs.cli_runner import run_with_progress
    from crystal_studio.store.models import get_model

    if executor != "local" and (repeat is not None or method != "screen"):
        raise CrystalStudioError(f"--executor {executor} splits the work of method 'screen'; "
                                 f"{'a repeated run' if repeat is not None else repr(method)} runs in one process "
                                 "(use 'crystal-studio sweep --executor ray' to run many optimizations on a cluster)")
    proj = open_project(project)
    if repeat is not None:
        result = run_with_progress(f"repeating run {repeat}", lambda progress, cancel: repeat_optimization(
            proj, repeat, device, progress, cancel))
    else:
        if spec is None or models is None:
            raise CrystalStudioError("say what to optimize: --spec FILE --models IDS (or --repeat RUN_ID)")
        model_ids = parse_ids(models, "--models")
        known = {t for mid in model_ids for t in get_model(proj, mid, with_checkpoint=False).targets}
        design = load_spec(spec, known_properties=known)
        settings = parse_assignments(set_ or [])
        with chosen_executor(executor, ray_address, ray_cpus) as tasks:
            result = run_with_progress(f"{method}: {design.name}", lambda progress, cancel: run_optimization(
                proj, design, method, model_ids, candidates, steps, seed, device, dataset, progress, cancel,
                settings=settings, judge_model=judge, generator_model=generator, executor=tasks))
    _print_summary(result.summary)
    err.print(f"run {result.run_id}: {result.n_candidates} candidates stored "
              f"(see 'crystal-studio candidates {project} --run {result.run_id}')")
    if json_out:
        emit_json(result.as_json())


def candidates(
    project: ProjectArg,
    run: Annotated[int, typer.Option(help="Run id: an optimization, structure-prediction or crystal-sampling run.")],
    only_success: OnlySuccessOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """List the candidates of a run (optimization, structure prediction or crystal sampling) with their
    checks and predicted properties."""
    from crystal_studio.design.job import run_summary
    from crystal_studio.store.candidates import list_candidates
    from crystal_studio.store.models import get_run

    proj = open_project(project)
    stored = get_run(proj, run)
    if stored.kind == "train":
        raise CrystalStudioError(f"run {run} is a training run: it stored a model, not candidates "
                                 "(see 'crystal-studio runs' and 'crystal-studio models')")
    records = list_candidates(proj, run, only_success)
    if json_out:
        emit_json({"run_id": run, "summary": run_summary(proj, run), "candidates": [r.as_json() for r in records]})
        return
    if not records:
        err.print("no candidates")
        return
    props = list(records[0].evaluation.get("properties") or {})
    criteria = list(records[0].evaluation.get("criteria") or {})
    table = Table(title=f"run {run} ({stored.parameters.get('method', stored.kind)}): {len(records)} candidates",
                  title_justify="left")
    for col in ("id", "formula", "success", *props, *criteria):
        table.add_column(col, justify="left" if col == "formula" else "right")
    for r in records:
        ev_props, ev_criteria = r.evaluation.get("properties") or {}, r.evaluation.get("criteria") or {}
        table.add_row(str(r.id), r.formula, "✔" if r.success else "✘",
                      *(f"{ev_props.get(p, float('nan')):.3g}" for p in props),
                      *("✔" if ev_criteria.get(c) else "✘" for c in criteria))
    out.print(table)


def relax(
    project: ProjectArg,
    run: RunOpt,
    only_success: OnlySuccessOpt = False,
    ids: Annotated[str | None, typer.Option(help="Comma-separated candidate ids.")] = None,
    device: DeviceOpt = "auto",
    fmax: Annotated[float, typer.Option(help="Force criterion, eV/Å.")] = 0.05,
    max_steps: Annotated[int, typer.Option(help="Most FIRE steps per candidate.")] = 300,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_cpus: RayCpusOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Relax candidates with CHGNet (cell free) and re-check them on the relaxed structure; with
    --executor ray, one Ray task per candidate (results stored here as they arrive)."""
    from crystal_studio.design.relaxation import lost_message, relax_run
    from crystal_studio.jobs.cli_runner import run_with_progress

    proj = open_project(project)
    chosen = parse_ids(ids, "--ids") if ids else None
    with chosen_executor(executor, ray_address, ray_cpus) as tasks:
        outcome = run_with_progress("relaxing with CHGNet", lambda progress, cancel: relax_run(
            proj, run, only_success, chosen, device, fmax, max_steps, progress, cancel, tasks))
    results = outcome.results
    report_tasks(outcome.report)
    if not results and not outcome.lost:
        raise CrystalStudioError("no candidates matched: nothing relaxed")
    survived = sum(r["success_after"] for r in results if r["success_before"])
    before = sum(r["success_before"] for r in results)
    err.print(f"relaxed {len(results)} candidates ({sum(r['converged'] for r in results)} converged); "
              f"success kept by {survived} of {before} successful ones")
    if json_out:
        emit_json({"run_id": run, "relaxed": results, "lost": outcome.lost, "tasks": outcome.report.as_json()})
    if outcome.lost:
        say("error:", "red", lost_message(outcome))
        raise typer.Exit(EXIT_USAGE if not results else EXIT_PARTIAL)


def methods(json_out: JsonOpt = False) -> None:
    """List the optimization methods and every option 'optimize --set NAME=VALUE' accepts."""
    from crystal_studio.design.methods import METHODS

    docs = [info.describe() for info in METHODS.values()]
    if json_out:
        emit_json({"methods": docs})
        return
    for doc in docs:
        table = Table(title=f"{doc['name']} ({doc['family']}; needs {', '.join(doc['needs'])}): {doc['title']}",
                      title_justify="left")
        for column in ("option", "default", "unit", "meaning"):
            table.add_column(column)
        for setting in doc["options"]:
            allowed = f" [{' | '.join(setting['choices'])}]" if setting["choices"] else ""
            table.add_row(setting["name"], str(setting["default"]), setting["unit"], setting["help"] + allowed)
        out.print(table)


def sample(
    project: ProjectArg,
    model: Annotated[int, typer.Option("--model", "-m", help="A generative model id (e.g. a composition_vae).")],
    n: Annotated[int, typer.Option("--n", help="Number of samples to draw.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 0,
    around: Annotated[int | None, typer.Option(
        help="Draw around this structure id's latent code instead of the prior N(0, I).")] = None,
    sigma: Annotated[float, typer.Option(help="Spread of the draws around --around (latent units).")] = 1.0,
    decomposition_class: Annotated[int | None, typer.Option(
        "--class", help="Only this decomposition class (1: on the dataset hull, 2: two products, ...).")] = None,
    condition_decile: Annotated[int | None, typer.Option(
        help="Voxel VAEs: condition the draws on this decile (1-10) of the model's conditioning property.")] = None,
    target_model: Annotated[int | None, typer.Option(
        help="Voxel VAEs: a predictor of the conditioning property; adds the funnel stage 'within --within of "
             "the target' (the base's value with --around, else the decile's median).")] = None,
    within: Annotated[float, typer.Option(
        help="With --target-model: the allowed deviation from the target, as a fraction (0.2 = 20 %).")] = 0.2,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Draw samples from a generative model, store them as a run and print the validity funnel."""
    from crystal_studio.design.sampling import sample_model
    from crystal_studio.jobs.cli_runner import run_with_progress

    proj = open_project(project)
    summary = run_with_progress("sampling", lambda progress, cancel: sample_model(
        proj, model, n, seed, around, sigma, decomposition_class, device, progress, cancel,
        condition_decile=condition_decile, target_model=target_model, within=within))
    doc = summary.as_json()
    if json_out:
        emit_json(doc)
        return
    table = Table(title=f"run {summary.run_id}: {n} samples from model {model}", title_justify="left")
    table.add_column("stage")
    table.add_column("count", justify="right")
    for stage, count in summary.funnel.items():
        table.add_row(stage, str(count))
    out.print(table)
    err.print(f"compositional validity {summary.compositional_validity:.1%}, unique {summary.unique_rate:.1%}, "
              f"novel {summary.novel_rate:.1%} ({summary.note})")


def samples(
    project: ProjectArg,
    run: Annotated[int, typer.Option(help="Sampling run id.")],
    only_valid: Annotated[bool, typer.Option(help="Only compositionally valid formulas.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List the formulas a sampling run drew, most frequent first, with their checks."""
    from crystal_studio.store.samples import list_samples

    rows = [r for r in list_samples(open_project(project), run)
            if r.checks.get("compositionally_valid") or not only_valid]
    if json_out:
        emit_json({"run_id": run, "samples": [r.as_json() for r in rows]})
        return
    table = Table(title=f"run {run}: {len(rows)} formulas", title_justify="left")
    for col in ("formula", "count", "valid", "novel", "elements", "class"):
        table.add_column(col, justify="left" if col == "formula" else "right")
    for r in rows:
        c = r.checks
        table.add_row(r.formula, str(r.count), "✔" if c.get("compositionally_valid") else "✘",
                      "✔" if c.get("novel") else "✘", str(c.get("n_elements", "")), str(c.get("decomposition_class", "")))
    out.print(table)


def csp(
    project: ProjectArg,
    formula: Annotated[list[str] | None, typer.Option(
        "--formula", "-f", help="A formula to predict structures for, repeatable (e.g. -f Li2O -f NaCl).")] = None,
    from_samples: Annotated[int | None, typer.Option(
        help="Also take formulas from this sampling run (see 'crystal-studio samples').")] = None,
    top: Annotated[int, typer.Option(
        help="With --from-samples: the K most often drawn compositionally valid formulas.")] = 10,
    method: Annotated[str, typer.Option(
        help="random: random symmetric crystals relaxed (AIRSS-like); lcoms: LCOMs on a csp_vae's conservative "
             "surrogate; mse: the same on its plain-MSE surrogate (the ablation). All spend --n relaxations.")] = "random",
    trials: Annotated[int, typer.Option(
        "--n", "--trials", help="CHGNet relaxations per formula (lcoms/mse: half as starts, half as decodes).")] = 8,
    models: Annotated[str | None, typer.Option(
        help="Comma-separated model ids: property predictors whose predictions join the candidates' properties "
             "and, for lcoms/mse, one csp_vae.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="LCOMs setting NAME=VALUE, repeatable: steps, step_size, latent_bound, true_every.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (a formula gets the same crystals for the same seed).")] = 0,
    max_atoms: Annotated[int, typer.Option(help="Most atoms in a generated (conventional) cell.")] = 20,
    relax_steps: Annotated[int, typer.Option(help="Most FIRE steps per relaxation.")] = 200,
    fmax: Annotated[float, typer.Option(help="Force criterion of the relaxation, eV/Å.")] = 0.1,
    keep: Annotated[str, typer.Option(
        help="best: the lowest-energy structure per formula; distinct: every structurally distinct one.")] = "best",
    dataset: Annotated[str | None, typer.Option(
        help="Dataset to judge novelty against (default: the first model's training set).")] = None,
    device: DeviceOpt = "auto",
    repeat: Annotated[int | None, typer.Option(
        help="Run this stored csp run again from its stored parameters (other options are ignored "
             "except --device).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Predict crystal structures for formulas: random symmetric crystals (PyXtal) relaxed by CHGNet, or
    LCOMs latent optimization (--method lcoms --models CSP_VAE_ID); the lowest-energy structure per
    formula is stored as a candidate of a run ('crystal-studio candidates', 'export --run')."""
    from crystal_studio.core.options import parse_assignments
    from crystal_studio.design.csp import formulas_from_samples, predict_structures, repeat_csp
    from crystal_studio.jobs.cli_runner import run_with_progress

    proj = open_project(project)
    if repeat is not None:
        result = run_with_progress(f"repeating run {repeat}", lambda progress, cancel: repeat_csp(
            proj, repeat, device, progress, cancel))
    else:
        formulas = list(formula or [])
        source = None
        if from_samples is not None:
            formulas += formulas_from_samples(proj, from_samples, top)
            source = {"sampling_run": from_samples, "top": top}
        if not formulas:
            raise CrystalStudioError("say which formulas: --formula F (repeatable) or --from-samples RUN_ID --top K")
        model_ids = parse_ids(models, "--models") if models else []
        result = run_with_progress("structure prediction", lambda progress, cancel: predict_structures(
            proj, formulas, trials, model_ids, seed, max_atoms, relax_steps, fmax, device, progress, cancel,
            keep=keep, dataset=dataset, source=source, method=method, lcoms=parse_assignments(set_ or []) or None))
    table = Table(title=f"run {result.run_id}: {result.n_candidates} candidates", title_justify="left")
    for col in ("formula", "status", "E (eV/atom)", "space group", "Z", "converged", "candidate", "note"):
        table.add_column(col, justify="left" if col in ("formula", "status", "note") else "right")
    for f in result.formulas:
        table.add_row(f.formula, f.status, "" if f.energy_per_atom is None else f"{f.energy_per_atom:.3f}",
                      f"{f.spacegroup} ({f.spacegroup_number})" if f.spacegroup else "", str(f.z or ""),
                      "" if f.converged is None else ("✔" if f.converged else "✘"),
                      str(f.candidate_id or ""), f.reason)
    (err if json_out else out).print(table)
    for f in result.failed:
        say("failed", "yellow", f"{f.input}: {f.reason}")
    err.print(f"run {result.run_id}: {result.n_candidates} candidates stored "
              f"(see 'crystal-studio candidates {project} --run {result.run_id}')")
    if json_out:
        emit_json(result.as_json())
    if result.failed:
        raise typer.Exit(EXIT_USAGE if len(result.failed) == len(result.formulas) else EXIT_PARTIAL)


def register(app: typer.Typer) -> None:
    """Add the design verbs to the main app."""
    app.command()(methods)
    app.command()(optimize)
    app.command()(candidates)
    app.command()(relax)
    app.command()(sample)
    app.command()(samples)
    app.command()(csp)
    cluster.register(app)  # sweep: a grid of optimizations (the scale-out verbs live in .cluster)
