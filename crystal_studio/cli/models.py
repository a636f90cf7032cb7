"""Command-line verbs for property predictors and runs: ``train``, ``models``, ``runs``, ``predict`` and
``evaluate``.

:func:`register` adds them to the main typer app. torch is imported only when one of them runs, so
``crystal-studio --help`` stays fast. JSON shapes follow DESIGN.md ("Command line conventions").
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crystal_studio.cli.common import (
    EXIT_PARTIAL,
    MAX_ID,
    JsonOpt,
    ProjectArg,
    cancelled_exit_code,
    emit_json,
    err,
    open_project,
    out,
    report_skipped,
    say,
)
from crystal_studio.core.errors import CrystalStudioError

DeviceOpt = Annotated[str, typer.Option(help="auto (GPU when available), cpu or cuda.")]
ModelOpt = Annotated[int, typer.Option("--model", "-m", help="Model id (see 'crystal-studio models').")]


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _metrics_table(title: str, metrics: dict) -> Table:
    from crystal_studio.core.properties import unit_of

    table = Table(title=title, title_justify="left")
    for col in ("target", "unit", "n", "MAE", "RMSE", "R²"):
        table.add_column(col, justify="left" if col in ("target", "unit") else "right")
    for target, m in metrics.items():
        table.add_row(target, unit_of(target), str(m.get("n", "")), _fmt(m["mae"]), _fmt(m["rmse"]), _fmt(m["r2"]))
    return table


def train(
    project: ProjectArg,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset to train on.")] = None,
    model: Annotated[str, typer.Option(
        help="Model kind: gnn (differentiable, what optimizers use), chgnet_transfer (heads on frozen "
             "CHGNet features; accurate judge and screener) or composition_vae (samples formulas; no targets).")] = "gnn",
    targets: Annotated[str, typer.Option(
        help="Comma-separated properties to predict, e.g. formation_energy_per_atom,band_gap.")] = "",
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs per ensemble member. Default: the kind's own (100 for gnn).")] = None,
    ensemble: Annotated[int | None, typer.Option(help="Ensemble members (the spread of their predictions is reported). Default: 3.")] = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the split, initialization and batch order.")] = 0,
    batch_size: Annotated[int | None, typer.Option(help="Crystals per batch. Default: the kind's own (64 for gnn).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate. Default: 0.001.")] = None,
    patience: Annotated[int | None, typer.Option(help="Stop a member after this many epochs without improvement. Default: the kind's own (20 for gnn).")] = None,
    loss: Annotated[str | None, typer.Option(help="l1, mse or huber (on standardized targets). Default: l1.")] = None,
    hidden: Annotated[int | None, typer.Option(help="Width of the atom states (gnn) or of the head's hidden layers (chgnet_transfer). Default: the kind's own (64 for gnn).")] = None,
    layers: Annotated[int | None, typer.Option(help="Message-passing layers (gnn) or hidden layers of the head (chgnet_transfer). Default: the kind's own (3 for gnn).")] = None,
    cutoff: Annotated[float | None, typer.Option(help="Neighbour cutoff radius in Å. Default: 5.")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0: default).")] = 0,
    name: Annotated[str | None, typer.Option(help="Name of the stored model.")] = None,
    resume: Annotated[int | None, typer.Option(
        help="Continue this cancelled or interrupted training run (other settings come from the run).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any training option NAME=VALUE, repeatable (e.g. --set weight_decay=0 --set n_gaussians=32); "
                      "applied after the flags above.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Train a model on a dataset (a property predictor, or a generative model); prints the model id and
    its test metrics."""
    from crystal_studio.core.options import apply_options, parse_assignments
    from crystal_studio.core.properties import canonical_name
    from crystal_studio.jobs.cli_runner import RunCancelled, run_with_progress
    from crystal_studio.ml.kinds import KINDS, PREDICTOR_KINDS, config_class, config_for
    from crystal_studio.ml.training import resume_training, train_model
    from crystal_studio.store import models as model_store

    proj = open_project(project)
    if resume is not None:
        model_store.refuse_if_running(proj, resume)

        def work(progress, cancel):
            return resume_training(proj, resume, progress, cancel, device=None if device == "auto" else device,
                                   threads=threads or None)
    else:
        if model not in KINDS:
            raise CrystalStudioError(f"--model must be one of {', '.join(KINDS)} (got '{model}')")
        if not dataset:
            raise CrystalStudioError("say what to train on: --dataset NAME (or --resume RUN_ID)")
        names = [canonical_name(t) for t in targets.split(",") if t.strip()]
        if model in PREDICTOR_KINDS and not names:
            raise CrystalStudioError("say what to predict: --targets formation_energy_per_atom,band_gap")
        flags = {"epochs": epochs, "ensemble": ensemble, "seed": seed, "batch_size": batch_size, "lr": lr,
                 "patience": patience, "loss": loss, "device": device, "threads": threads, "hidden": hidden,
                 "layers": layers, "cutoff": cutoff}
        settable = {f.name for f in dataclasses.fields(config_class(model))}
        misplaced = [name for name, value in flags.items() if value is not None and name not in settable]
        if misplaced:
            raise CrystalStudioError(f"{', '.join('--' + m.replace('_', '-') for m in misplaced)} does not apply "
                                     f"to a {model} model ('crystal-studio train --model {model} --set NAME=VALUE' "
                                     "takes its own settings)")
        config = config_for(model, names, **{k: v for k, v in flags.items() if k in settable})
        config = apply_options(config, parse_assignments(set_ or []), model)
        config.validate()

        def work(progress, cancel):
            return train_model(proj, dataset, config, name, progress, cancel)

    try:
        result = run_with_progress("training", work)
    except RunCancelled as exc:
        err.print(f"run {exc.run_id} {_message(model_store.get_run(proj, exc.run_id), project)}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(cancelled_exit_code(exc)) from None
    err.print(f"model {result.model_id} stored (run {result.run_id}): {result.message}", highlight=False,
              soft_wrap=True)
    if json_out:
        emit_json(result.as_json())
        return
    if all("mae" in m for m in result.metrics.values()):
        out.print(_metrics_table(f"model {result.model_id} — test metrics", result.metrics))
        return
    table = Table(title=f"model {result.model_id} — validation metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for group in result.metrics.values():
        for key, value in group.items():
            table.add_row(key, _fmt(value))
    out.print(table)


def models(project: ProjectArg, json_out: JsonOpt = False) -> None:
    """List trained models with their targets, dataset and test metrics."""
    from crystal_studio.store import models as model_store

    records, unreadable = model_store.read_models(open_project(project))
    for line in unreadable:
        say("warning:", "yellow", f"{line}; left out")
    if json_out:
        emit_json({"models": [r.as_json() for r in records], "unreadable": unreadable})
    elif not records:
        err.print("no models yet: train one with 'crystal-studio train PROJECT --dataset NAME --targets ...'")
    else:
        out.print(_models_table(records))
    if unreadable:
        raise typer.Exit(EXIT_PARTIAL)


def _models_table(records) -> Table:
    """The models as a table: id, name, kind, members, dataset, test MAE, created."""
    table = Table(title="models", title_justify="left")
    for col in ("id", "name", "kind", "members", "dataset", "test MAE", "created"):
        table.add_column(col, justify="right" if col in ("id", "members") else "left")
    for r in records:
        mae = ", ".join(f"{t} {_fmt(m.get('mae'))}" for t, m in r.metrics.items())
        table.add_row(str(r.id), r.name, r.kind, str(r.hyperparameters.get("members", "")), r.dataset or "—", mae,
                      r.created)
    return table


def _message(run, project: Path) -> str:
    """A run's message with the project's path where it says PROJECT (e.g. how to resume)."""
    return run.message.replace("PROJECT", str(project))


def _when(stamp: str | None) -> str:
    """A stored UTC time, shorter: '2026-12-03 13:12:52'."""
    return stamp[:19].replace("T", " ") if stamp else "—"


def _brief(value, limit: int = 8):
    """``value`` with lists longer than ``limit`` shortened to a count (e.g. a training split's ids)."""
    if isinstance(value, dict):
        return {k: _brief(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return f"[{len(value)} items]" if len(value) > limit else [_brief(v, limit) for v in value]
    return value


def runs(
    project: ProjectArg,
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind: train, optimization or sampling.")] = None,
    show: Annotated[int | None, typer.Option(
        "--show", min=1, max=MAX_ID, help="Show this run in full: its parameters and last metrics.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List training, optimization and sampling runs, newest first, with their status; or one run in full
    with --show ID."""
    from crystal_studio.store import models as model_store

    proj = open_project(project)
    if show is not None:
        if kind is not None:
            raise CrystalStudioError("--show ID names one run: leave out --kind")
        _show_run(proj, project, show, json_out)
        return
    if kind is not None and kind not in model_store.RUN_KINDS:
        raise CrystalStudioError(f"--kind must be one of {', '.join(model_store.RUN_KINDS)} (got '{kind}')")
    records = model_store.list_runs(proj, kind)
    if json_out:
        emit_json({"runs": [r.as_json(with_parameters=False) for r in records]})
        return
    if not records:
        err.print(f"no {kind + ' ' if kind else ''}runs yet")
        return
    table = Table(title="runs", title_justify="left")
    named = any(r.name for r in records)
    for col in ("id", *(("name",) if named else ()), "kind", "status", "started", "finished", "message"):
        table.add_column(col, justify="right" if col == "id" else "left", overflow="fold")
    for r in records:
        table.add_row(str(r.id), *((r.name,) if named else ()), r.kind, r.status, _when(r.started), _when(r.finished),
                      _message(r, project))
    out.print(table)


def _show_run(proj, project: Path, run_id: int, json_out: bool) -> None:
    """Print run ``run_id``: its fields, parameters and the last value of each metric."""
    from crystal_studio.store import models as model_store

    run = model_store.get_run(proj, run_id)
    last = {name: {"step": points[-1][0], "value": points[-1][1], "n": len(points)}
            for name, points in model_store.run_metrics(proj, run_id).items()}
    if json_out:
        emit_json({**run.as_json(), "metrics": last})
        return
    fields = Table(title=f"run {run.id}", title_justify="left", show_header=False)
    fields.add_column("field")
    fields.add_column("value", overflow="fold")
    owner = f"process {run.owner_pid} on {run.owner_host}" if run.owner_pid else "—"
    for key, value in (("name", run.name or "—"), ("kind", run.kind), ("status", run.status), ("message", _message(run, project)),
                       ("started", run.started), ("finished", run.finished or "—"), ("seed", str(run.seed)),
                       ("device", run.device), ("owner", owner), ("heartbeat", run.heartbeat or "—")):
        fields.add_row(key, value)
    for key, value in _brief(run.parameters).items():
        fields.add_row(f"parameters.{key}", value if isinstance(value, str) else json.dumps(value, default=str))
    out.print(fields)
    if not last:
        err.print(f"run {run.id} recorded no metrics")
        return
    metrics = Table(title=f"run {run.id} — last metrics", title_justify="left")
    for col in ("metric", "step", "value", "points"):
        metrics.add_column(col, justify="left" if col == "metric" else "right")
    for name, m in last.items():
        metrics.add_row(name, str(m["step"]), _fmt(m["value"]), str(m["n"]))
    out.print(metrics)


def _model_and_inputs(project: Path, model: int, device: str, paths: list[Path], where: str):
    """(model record, predictor, readable records, skipped issues); the skipped ones are listed on
    stderr, and no readable record at all is an error naming ``where``."""
    from crystal_studio.ml.predictor import load_predictor
    from crystal_studio.ml.runtime import resolve_device

    record, predictor = load_predictor(open_project(project), model, resolve_device(device))
    records, issues = _read_inputs(paths)
    report_skipped(issues)
    if not records:
        raise CrystalStudioError(f"no readable structure in {where}")
    return record, predictor, records, issues


def _read_inputs(paths: list[Path]):
    """Parsed records of ``paths`` whose elements the models cover, and every skipped record."""
    from crystal_studio.core.io import ImportIssue, read_structures
    from crystal_studio.ml.elements import unsupported_elements

    records, issues = read_structures(paths)
    usable = []
    for rec in records:
        bad = unsupported_elements(rec.info.elements)
        if bad:
            issues.append(ImportIssue(rec.source, f"element(s) {', '.join(bad)} not covered by the models"))
        else:
            usable.append(rec)
    return usable, issues


def _domain_flags(record, std, records) -> list[dict | None]:
    """Out-of-domain flags of the predictions for parsed ``records`` with spreads ``std`` (see
    ml/domain.py); None each for a model that recorded no domain."""
    from crystal_studio.ml.domain import domain_flags, reference_of

    return domain_flags(reference_of(record.hyperparameters), std, [r.info.elements for r in records],
                        [r.info.volume / max(r.info.nsites, 1) for r in records])


def predict(
    project: ProjectArg,
    paths: Annotated[list[Path], typer.Argument(help="CIF, POSCAR, extxyz, JSON or CSV files, folders or zips.")],
    model: ModelOpt,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Predict properties, with the ensemble spread, for crystals in files.

    Exit 0 if every record was predicted, 3 if some were skipped, 2 if none could be.
    """
    from crystal_studio.jobs.cli_runner import run_with_progress
    from crystal_studio.ml.predictor import predict_structures

    record, predictor, records, issues = _model_and_inputs(project, model, device, paths, "the given paths")
    mean, std = run_with_progress(
        "predicting", lambda progress, cancel: predict_structures(
            predictor, [r.structure for r in records], progress=progress, cancel=cancel))
    flags = _domain_flags(record, std, records)
    predictions = []
    for k, rec in enumerate(records):
        row = {"source": rec.source, "formula": rec.info.reduced_formula}
        for j, target in enumerate(predictor.targets):
            row[target] = float(mean[k, j])
            row[target + "_std"] = float(std[k, j])
        if flags[k] is not None:
            row.update({"out_of_domain": flags[k]["out_of_domain"], "domain_spread_ratio": flags[k]["spread_ratio"],
                        "domain_reason": flags[k]["reason"]})
        predictions.append(row)
    if json_out:
        emit_json({"model_id": record.id, "targets": predictor.targets, "predictions": predictions})
    else:
        has_domain = any(f is not None for f in flags)
        table = Table(title=f"model {record.id}: {record.name}", title_justify="left")
        for col in ("source", "formula", *predictor.targets, *(("domain",) if has_domain else ())):
            table.add_column(col, justify="left" if col in ("source", "formula", "domain") else "right")
        for row in predictions:
            domain = (("OUT: " + row["domain_reason"]) if row.get("out_of_domain") else "in",) if has_domain else ()
            table.add_row(row["source"], row["formula"],
                          *(f"{row[t]:.3f} ± {row[t + '_std']:.3f}" for t in predictor.targets), *domain)
        out.print(table)
    if issues:
        raise typer.Exit(EXIT_PARTIAL)


def evaluate(
    project: ProjectArg,
    model: ModelOpt,
    data: Annotated[list[Path], typer.Option("--data", help="Labelled file(s) (e.g. a CSV with a cif column).")],
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """MAE, RMSE and R² of a model on labelled structures, per target.

    Exit 0 if every record was read, 3 if some were skipped, 2 if none could be used.
    """
    from crystal_studio.jobs.cli_runner import run_with_progress
    from crystal_studio.ml.predictor import evaluate_structures

    record, predictor, records, issues = _model_and_inputs(project, model, device, data, "--data")
    n, metrics, std, used = run_with_progress(
        "evaluating", lambda progress, cancel: evaluate_structures(
            predictor, [r.structure for r in records], [r.properties for r in records], progress=progress,
            cancel=cancel, with_spread=True))
    flags = _domain_flags(record, std, [records[i] for i in used])
    doc = {"model_id": record.id, "n": n, "metrics": metrics}
    if any(f is not None for f in flags):
        outside = [records[i].source for i, f in zip(used, flags, strict=True) if f and f["out_of_domain"]]
        doc["out_of_domain"] = {"n": len(outside), "fraction": len(outside) / max(n, 1), "sources": outside}
    if json_out:
        emit_json(doc)
    else:
        out.print(_metrics_table(f"model {record.id} on {n} structures", metrics))
        if "out_of_domain" in doc:
            ood = doc["out_of_domain"]
            out.print(f"{ood['n']} of {n} structures out of the training domain (ensemble spread or elements)"
                      + (f": {', '.join(ood['sources'][:10])}" + (" …" if ood["n"] > 10 else "") if ood["n"] else ""))
    if issues:
        raise typer.Exit(EXIT_PARTIAL)


def register(app: typer.Typer) -> None:
    """Add the predictor and run verbs to ``app``."""
    app.command()(train)
    app.command()(models)
    app.command()(runs)
    app.command()(predict)
    app.command()(evaluate)
