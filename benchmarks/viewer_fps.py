"""Viewer benchmark: render time and frame rate of the VTK structure viewer for big cells.

Builds SrTiO3 supercells of about 1,000 and 10,000 atoms, shows each in a
:class:`~crystal_studio.gui.viewer.StructureViewer` whose VTK view is 800 x 600 pixels, then rotates
the camera ``--frames`` times (360 degrees in all), timing every ``Render()`` up to ``glFinish``
(``WaitForCompletion``) so that software GL cannot defer work past the clock. Periodic boundary images
are off so the atom counts are exact; bonds are on. Each size is measured in two qualities:
``still`` (the frame drawn when the camera rests: cylinder bonds, FXAA) and ``interactive`` (the
level-of-detail frames drawn while the mouse drags the camera). Prints one JSON line per
(atom count, quality). The load average is recorded because other processes share the CPU.

Needs an X display (Mesa software GL under Xvfb is the reference)::

    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/viewer_fps.py [--frames 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date

WIDTH, HEIGHT = 800, 600


def emit(**fields) -> None:
    fields.setdefault("date", date.today().isoformat())
    fields.setdefault("machine", f"{platform.machine()} {os.cpu_count()} cores")
    print(json.dumps(fields), flush=True)


def srtio3_supercell(target_atoms: int):
    """A cubic SrTiO3 supercell with about ``target_atoms`` atoms (5 per cell)."""
    from pymatgen.core import Lattice, Structure

    cell = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cells = max(1, round(target_atoms / 5))
    # the most cube-like n1 x n2 x n3 with n1 * n2 * n3 == cells (fall back to near it)
    best = None
    for n1 in range(1, cells + 1):
        for n2 in range(n1, cells // n1 + 1):
            n3 = cells // (n1 * n2)
            if n3 < n2:
                continue
            err = abs(n1 * n2 * n3 - cells) * 100 + (n3 - n1)
            if best is None or err < best[0]:
                best = (err, (n1, n2, n3))
    return cell * best[1], best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--qualities", nargs="+", default=["still", "interactive"], choices=["still", "interactive"])
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop rotating a case after this long")
    parser.add_argument("--no-bonds", action="store_true")
    args = parser.parse_args()
    if not os.environ.get("DISPLAY"):
        print("skipped: needs an X display; run under xvfb-run -a -s '-screen 0 1280x1024x24'", file=sys.stderr)
        return

    from PySide6.QtWidgets import QApplication

    from crystal_studio.gui.viewer import StructureViewer

    app = QApplication.instance() or QApplication([])
    viewer = StructureViewer()
    viewer.vtk_widget.setFixedSize(WIDTH, HEIGHT)
    viewer.show()
    for _ in range(20):
        app.processEvents()
    viewer.bonds_box.setChecked(not args.no_bonds)
    viewer.images_box.setChecked(False)
    gl = viewer.render_window.ReportCapabilities().splitlines()
    renderer_line = next((line.split(":", 1)[1].strip() for line in gl if "OpenGL renderer" in line), "?")
    for n_atoms in args.atoms:
        structure, repeats = srtio3_supercell(n_atoms)
        for quality in args.qualities:
            lod = hasattr(viewer, "set_interactive")
            if quality == "interactive" and not lod:
                print("skipped interactive quality: this viewer has no level of detail", file=sys.stderr)
                continue
            if lod:
                viewer.set_interactive(False, render=False)
            viewer.set_structure(None)
            t0 = time.perf_counter()
            viewer.set_structure(structure, "bench")
            viewer.render_window.WaitForCompletion()
            first = time.perf_counter() - t0
            if lod:
                viewer.set_interactive(quality == "interactive", render=False)
            camera = viewer.renderer.GetActiveCamera()
            times = []
            start = time.perf_counter()
            for _ in range(args.frames):
                if time.perf_counter() - start > args.max_seconds:
                    break
                camera.Azimuth(360.0 / args.frames)
                camera.OrthogonalizeViewUp()
                viewer.renderer.ResetCameraClippingRange()
                t = time.perf_counter()
                viewer.render_window.Render()
                viewer.render_window.WaitForCompletion()
                times.append(time.perf_counter() - t)
                app.processEvents()
            median = statistics.median(times)
            size = viewer.render_window.GetSize()
            emit(benchmark="viewer.fps", atoms=viewer.atom_count(), bonds=viewer.bond_count(),
                 supercell="x".join(map(str, repeats)), quality=quality,
                 drawn_as=viewer.drawn_as() if lod else "vtkGlyph3DMapper spheres + cylinders, MSAA 4x",
                 window=f"{size[0]}x{size[1]}", frames=len(times), first_render_s=round(first, 3),
                 median_frame_ms=round(median * 1e3, 1), p90_frame_ms=round(sorted(times)[int(0.9 * len(times))] * 1e3, 1),
                 fps_median=round(1.0 / median, 1), fps_mean=round(len(times) / sum(times), 1),
                 gl=renderer_line, load_avg=round(os.getloadavg()[0], 2))
    viewer.close_viewer()


if __name__ == "__main__":
    main()
