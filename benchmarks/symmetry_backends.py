"""Space groups from moyopy against spglib on real crystals (issue 15, item 1).

    .venv/bin/python benchmarks/symmetry_backends.py [--rows 33000] [--file mp_mtcgcnn_33k.csv.gz]

Parses the first ``--rows`` crystals of a shared CSV-with-CIF file (gemmi fast path, as the importer
does), finds each space group with spglib and with moyopy at the importer's tolerances (symprec
0.01 Å, angle tolerance 5°), and prints JSON lines: one per disagreement (id, formula, both numbers)
and a summary (crystals, agreements, disagreements, each backend's time per crystal in ms). Timings
are single-threaded medians over the whole set; run it on a quiet machine. moyopy is not a dependency
(the importer keeps spglib, see docs/benchmarks.md): ``pip install moyopy`` first. Do not point it at
carbon_24.csv.gz: moyopy 0.21.0 spins for tens of seconds on one of its crystals and then aborts the
whole process (a Rust allocation failure, docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def emit(**fields) -> None:
    fields.update(date=date.today().isoformat(), machine=f"{platform.machine()} {os.cpu_count()} cores, "
                                                         f"load {os.getloadavg()[0]:.1f}")
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=33_000)
    parser.add_argument("--file", default="mp_mtcgcnn_33k.csv.gz")
    args = parser.parse_args()
    path = SHARED / args.file
    if not path.exists():
        sys.exit(f"{path} is missing: this benchmark needs the shared data")
    sys.path.insert(0, str(ROOT))
    import gemmi
    try:
        import moyopy
    except ImportError:
        sys.exit("moyopy is not installed (it is not a dependency of Crystal Studio): pip install moyopy")
    import numpy as np

    from crystal_studio.core import structures as cs
    from crystal_studio.core.io import fast_cif_structure

    csv.field_size_limit(10 ** 8)
    crystals = []
    with gzip.open(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            if len(crystals) == args.rows:
                break
            block = gemmi.cif.read_string(row["cif"]).sole_block()
            structure = fast_cif_structure(block)
            if structure is not None:
                crystals.append((row["id"], structure))
    spglib_ms, moyo_ms, disagreements, moyo_failures = [], [], 0, 0
    for name, structure in crystals:
        started = time.perf_counter()
        reference, _ = cs.spacegroup(structure)
        spglib_ms.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        lattice, frac, numbers = cs.spglib_cell(structure)
        try:
            found = moyopy.MoyoDataset(moyopy.Cell(lattice.tolist(), frac.tolist(), list(numbers)),
                                       symprec=cs.SYMPREC, angle_tolerance=math.radians(cs.ANGLE_TOLERANCE)).number
        except ValueError:  # moyopy found no group (counted)
            found = None
            moyo_failures += 1
        moyo_ms.append(1000 * (time.perf_counter() - started))
        if found != reference:
            disagreements += 1
            emit(part="disagreement", id=name, formula=structure.composition.reduced_formula, nsites=len(structure),
                 spglib=reference, moyopy=found)
    emit(part="summary", file=args.file, crystals=len(crystals), agree=len(crystals) - disagreements,
         disagree=disagreements, moyopy_failures=moyo_failures, spglib_ms_median=round(float(np.median(spglib_ms)), 3),
         moyopy_ms_median=round(float(np.median(moyo_ms)), 3), spglib_ms_mean=round(float(np.mean(spglib_ms)), 3),
         moyopy_ms_mean=round(float(np.mean(moyo_ms)), 3), spglib=__import__("spglib").__version__,
         moyopy=moyopy.__version__)


if __name__ == "__main__":
    main()
