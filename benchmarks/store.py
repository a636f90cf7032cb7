"""Store benchmark: import ~100,000 real structures and time filtered page queries.

Builds a 100k-row CSV from ../shared/data (mp_mtcgcnn_33k repeated, plus perov_5), imports it with
the project's importer (all cores), then times page queries like the GUI's. Prints one JSON line per
result. Usage:  python benchmarks/store.py [--rows 100000] [--workers N]
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
    args = parser.parse_args()
    if not (SHARED / "mp_mtcgcnn_33k.csv.gz").exists():
        print(f"skipped: {SHARED} has no mp_mtcgcnn_33k.csv.gz", file=sys.stderr)
        return

    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project, StructureQuery

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = build_csv(args.rows, folder)
        project = Project.create(folder / "bench.sqlite")
        start = time.perf_counter()
        report = import_paths(project, [csv_path], "bench", workers=args.workers or None)
        elapsed = time.perf_counter() - start
        emit(benchmark="store.import", rows=args.rows, imported=report.imported, skipped=report.skipped,
             seconds=round(elapsed, 1), per_structure_ms=round(elapsed / args.rows * 1e3, 3),
             workers=args.workers or os.cpu_count(), db_mib=round(project.path.stat().st_size / 2**20, 1))

        queries = {
            "first page, no filter": StructureQuery(dataset="bench"),
            "oxides, band gap 2-3 eV": StructureQuery(dataset="bench", elements_all=["O"],
                                                      property_ranges={"band_gap": (2.0, 3.0)}),
            "formula contains 'Ti', sorted by band gap desc": StructureQuery(dataset="bench", formula="Ti",
                                                                             sort="band_gap", descending=True),
            "no O/F, 4-10 sites, sorted by formula": StructureQuery(dataset="bench", elements_none=["O", "F"],
                                                                    nsites_min=4, nsites_max=10,
                                                                    sort="reduced_formula"),
            "spacegroup 225, Ef < -1, sorted by Ef": StructureQuery(
                dataset="bench", spacegroup=225, property_ranges={"formation_energy_per_atom": (None, -1.0)},
                sort="formation_energy_per_atom"),
        }
        for name, query in queries.items():
            times = []
            for offset in (0, 100, 5000, 0, 100):
                t0 = time.perf_counter()
                project.page(query, offset=offset, limit=100)
                project.count(query)
                times.append((time.perf_counter() - t0) * 1e3)
            emit(benchmark="store.page_query", query=name, matches=project.count(query),
                 median_ms=round(statistics.median(times), 1), max_ms=round(max(times), 1),
                 note="page of 100 rows + count")


if __name__ == "__main__":
    main()
