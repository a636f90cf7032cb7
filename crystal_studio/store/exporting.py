"""Export structures from a project to CIF/POSCAR/extxyz files or a zip of them."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.io import (
    WRITE_FORMATS,
    atomic_output,
    check_new_outputs,
    ensure_folder,
    safe_filename,
    structure_text,
    write_structure_files,
)
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.store.project import Project, StructureQuery


def export_name(row: dict) -> str:
    """File stem for an exported structure: reduced formula and store id, e.g. 'SrTiO3_42'."""
    return f"{row['reduced_formula']}_{row['id']}"


def export_structures(project: Project, query: StructureQuery, out: str | os.PathLike, fmt: str,
                      symmetrize: bool = False, progress: ProgressCallback = no_progress,
                      cancel: CancelToken | None = None, overwrite: bool = False) -> list[Path]:
    """Write every structure matching ``query``; ``out`` is a folder, or a file ending in .zip.

    Returns the written paths (for a zip: the archive). Existing files are refused, nothing written,
    unless ``overwrite``. Cancelling stops between structures; a zip is only moved into place once
    complete.
    """
    cancel = cancel or CancelToken()
    total = project.count(query)
    items = []
    for i, (row, structure) in enumerate(project.iter_structures(query), 1):
        cancel.check()
        items.append((export_name(row), structure, row.get("properties", {})))
        if i % 100 == 0 or i == total:
            progress(ProgressEvent(i, total, "reading"))
    return write_items(items, Path(out), fmt, symmetrize, progress, cancel, overwrite)


def export_candidates(project: Project, run_id: int, out: str | os.PathLike, fmt: str, only_success: bool = False,
                      relaxed: bool = False, symmetrize: bool = False, progress: ProgressCallback = no_progress,
                      cancel: CancelToken | None = None, candidate_ids: list[int] | None = None,
                      overwrite: bool = False) -> list[Path]:
    """Write an optimization run's candidates (named formula + 'c' + candidate id), all or those in
    ``candidate_ids``; ``only_success``: those that succeed (after CHGNet relaxation where they were
    relaxed, see :attr:`CandidateRecord.final_success`); with ``relaxed`` the CHGNet-relaxed structure
    where one exists. Existing files are refused unless ``overwrite``."""
    from crystal_studio.store.candidates import list_candidates

    items = []
    wanted = set(candidate_ids) if candidate_ids is not None else None
    for record in list_candidates(project, run_id):
        if (wanted is not None and record.id not in wanted) or (only_success and not record.final_success):
            continue
        structure = (record.relaxed_structure if relaxed else None) or record.structure
        props = {k: v for k, v in record.evaluation.get("properties", {}).items() if v is not None}
        items.append((f"{record.formula}_c{record.id}", structure, props))
    return write_items(items, Path(out), fmt, symmetrize, progress, cancel or CancelToken(), overwrite)


def write_items(items, out: Path, fmt: str, symmetrize: bool, progress: ProgressCallback,
                cancel: CancelToken, overwrite: bool = False) -> list[Path]:
    """Write (name, structure, properties) items to a folder, or into ``out`` when it ends in .zip."""
    if out.suffix.lower() == ".zip":
        return [_write_zip(items, out, fmt, symmetrize, cancel, overwrite)] if items else []
    return write_structure_files(items, out, fmt, symmetrize, overwrite, progress, cancel)


def _write_zip(items, out: Path, fmt: str, symmetrize: bool, cancel: CancelToken, overwrite: bool) -> Path:
    if fmt not in WRITE_FORMATS:
        raise CrystalStudioError(f"unknown export format '{fmt}' (choose cif, poscar or extxyz)")
    check_new_outputs([out], overwrite)
    ensure_folder(out.parent)
    with atomic_output(out) as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, structure, props in items:
            cancel.check()
            archive.writestr(safe_filename(name) + WRITE_FORMATS[fmt],
                             structure_text(structure, fmt, symmetrize, props, comment=name))
    return out
