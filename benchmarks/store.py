"""Store benchmark: import ~100,000 real structures and time filtered page queries.

Builds a 100k-row CSV from ../shared/data (mp_mtcgcnn_33k repeated, plus perov_5), imports it with
the project's importer (all cores), then times page queries like the GUI's. Prints one JSON line per
result. Usage:  python benchmarks/store.py [--rows 100000] [--workers N] [--project PATH] [--repeat N]

``--project PATH`` keeps the imported project: the import runs only when PATH does not exist yet (then
the CSV is built and imported into it); otherwise the queries are timed on the existing file (opened
with Project.open, so pending migrations are applied first, after their backup copy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def emit(**fields) -> None:
    fields.setdefault("date", date.today().isoformat())
    fields.setdefault("machine", f"{platform.machine()} {os.cpu_count()} cores")
    print(json.dumps(fields), flush=True)


def build_csv(rows: int, folder: Path) -> Path:
    import pandas as pd

    mp = pd.read_csv(SHARED / "mp_mtcgcnn_33k.csv.gz")
    perov = pd.read_csv(SHARED / "perov_5.csv.gz")
    frames, total = [], 0
    while total < rows:
        part = mp.iloc[: rows - total]
        frames.append(part)
        total += len(part)
        if total < rows:
            frames.append(perov.iloc[: rows - total])
            total += len(frames[-1])
    path = folder / "bench.csv"
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--project", type=Path, default=None,
                        help="keep the imported project here; import only if the file does not exist yet")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time each query's offsets (0, 100, 5000, 0, 100) this many times")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN QUERY PLAN of each page and count")
    args = parser.parse_args()
    if not (SHARED / "mp_mtcgcnn_33k.csv.gz").exists():
        print(f"skipped: {SHARED} has no mp_mtcgcnn_33k.csv.gz", file=sys.stderr)
        return

    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.project is not None and args.project.exists():
            project = Project.open(args.project)
            emit(benchmark="store.reuse", project=str(args.project), structures=project.count(),
                 schema=project.schema_version, db_mib=round(project.path.stat().st_size / 2**20, 1))
        else:
            csv_path = build_csv(args.rows, folder)
            project = Project.create(args.project or folder / "bench.sqlite")
            start = time.perf_counter()
            report = import_paths(project, [csv_path], "bench", workers=args.workers or None)
            elapsed = time.perf_counter() - start
            emit(benchmark="store.import", rows=args.rows, imported=report.imported, skipped=report.skipped,
                 seconds=round(elapsed, 1), per_structure_ms=round(elapsed / args.rows * 1e3, 3),
                 workers=args.workers or os.cpu_count(), db_mib=round(project.path.stat().st_size / 2**20, 1))
        time_queries(project, args.repeat, args.explain)


QUERIES = {
    "first page, no filter": dict(dataset="bench"),
    "oxides, band gap 2-3 eV": dict(dataset="bench", elements_all=["O"], property_ranges={"band_gap": (2.0, 3.0)}),
    "formula contains 'Ti', sorted by band gap desc": dict(dataset="bench", formula="Ti", sort="band_gap",
                                                           descending=True),
    "no O/F, 4-10 sites, sorted by formula": dict(dataset="bench", elements_none=["O", "F"], nsites_min=4,
                                                  nsites_max=10, sort="reduced_formula"),
    "spacegroup 225, Ef < -1, sorted by Ef": dict(dataset="bench", spacegroup=225,
                                                  property_ranges={"formation_energy_per_atom": (None, -1.0)},
                                                  sort="formation_energy_per_atom"),
}


def explain(project, query) -> dict:
    """EXPLAIN QUERY PLAN of the SQL that page() and count() run for ``query`` (captured via a trace)."""
    statements: list[str] = []
    conn = project.db.conn
    conn.set_trace_callback(statements.append)
    try:
        project.page(query, offset=0, limit=100, with_properties=False)
        project.count(query)
    finally:
        conn.set_trace_callback(None)
    plans = {}
    for sql in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "WITH")) or "FROM datasets WHERE name" in sql:
            continue
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        plans[sql] = [r[-1] for r in rows]
    return plans


def time_queries(project, repeat: int, show_plans: bool) -> None:
    from crystal_studio.store.project import StructureQuery

    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    for name, fields in QUERIES.items():
        query = StructureQuery(**fields)
        if show_plans:
            for sql, plan in explain(project, query).items():
                emit(benchmark="store.plan", query=name, sql=sql, plan=plan)
        times, page_times, count_times = [], [], []
        for _ in range(max(1, repeat)):
            for offset in (0, 100, 5000, 0, 100):
                t0 = time.perf_counter()
                project.page(query, offset=offset, limit=100)
                t1 = time.perf_counter()
                project.count(query)
                t2 = time.perf_counter()
                times.append((t2 - t0) * 1e3)
                page_times.append((t1 - t0) * 1e3)
                count_times.append((t2 - t1) * 1e3)
        emit(benchmark="store.page_query", query=name, matches=project.count(query),
             median_ms=round(statistics.median(times), 1), max_ms=round(max(times), 1),
             page_median_ms=round(statistics.median(page_times), 1),
             count_median_ms=round(statistics.median(count_times), 1), samples=len(times),
             first_ids=[r["id"] for r in project.page(query, limit=5, with_properties=False)],
             loadavg_before=load, loadavg_after=Path("/proc/loadavg").read_text().split()[:3] if load else [],
             note="page of 100 rows + count; offsets 0, 100, 5000, 0, 100")

if __name__ == "__main__":
    main()
