"""Simulated powder X-ray diffraction of the shown structure (pymatgen's XRDCalculator), computed in a
background job and drawn as a stick pattern with the strongest peaks labelled by their hkl."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from pymatgen.core import Structure
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from crystal_studio.gui.jobs import Job, JobManager

WAVELENGTHS = ("CuKa", "MoKa", "CoKa", "FeKa", "CrKa", "AgKa")  # pymatgen's names of common anodes
TWO_THETA_RANGE = (5.0, 90.0)  # degrees
LABELLED_PEAKS = 8  # strongest peaks labelled with their Miller indices


def xrd_work(structure: Structure, wavelength: str):
    """Job function: (2θ in degrees, intensity scaled to 100, hkl label per peak)."""

    def work(_progress, cancel):
        from pymatgen.analysis.diffraction.xrd import XRDCalculator

        cancel.check()
        pattern = XRDCalculator(wavelength=wavelength).get_pattern(structure, two_theta_range=TWO_THETA_RANGE)
        labels = [" ".join("".join(str(i) for i in family["hkl"]) for family in peak[:1]) for peak in pattern.hkls]
        return np.asarray(pattern.x), np.asarray(pattern.y), labels

    return work


class XRDView(QWidget):
    """Stick pattern of the structure given to :meth:`set_structure` (recomputed when shown)."""

    def __init__(self, jobs: JobManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.jobs = jobs
        self.structure: Structure | None = None
        self.title = ""
        self.job: Job | None = None
        self.peaks: tuple[np.ndarray, np.ndarray, list[str]] | None = None
        self._stale = False
        self.wavelength_combo = QComboBox()
        self.wavelength_combo.addItems(WAVELENGTHS)
        self.wavelength_combo.setToolTip("X-ray source (Kα wavelength of the anode)")
        self.wavelength_combo.currentIndexChanged.connect(lambda _: self._recompute())
        self.status = QLabel("Select a structure to simulate its powder pattern.")
        self.status.setStyleSheet("color: #555;")
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "2θ (°)")
        self.plot.setLabel("left", "intensity (max = 100)")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setXRange(*TWO_THETA_RANGE, padding=0)
        top = QHBoxLayout()
        top.addWidget(QLabel("Source"))
        top.addWidget(self.wavelength_combo)
        top.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)

    def set_structure(self, structure: Structure | None, title: str = "") -> None:
        """Show ``structure``'s pattern; computed now when the view is visible, else when it is shown."""
        self.structure, self.title = structure, title
        self._stale = True
        if self.isVisible():
            self._recompute()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if self._stale:
            self._recompute()

    def _recompute(self) -> None:
        self._stale = False
        if self.job is not None and self.job.state == "running":
            self.job.cancel()
        self.plot.clear()
        self.peaks = None
        if self.structure is None:
            self.status.setText("Select a structure to simulate its powder pattern.")
            return
        wavelength = self.wavelength_combo.currentText()
        self.status.setText(f"Simulating the {wavelength} pattern of {self.title or 'the structure'}…")
        self.job = self.jobs.start(f"XRD of {self.title or 'structure'}", xrd_work(self.structure, wavelength),
                                   lambda result, job_structure=self.structure: self._show(result, job_structure))

    def _show(self, result, structure: Structure) -> None:
        if structure is not self.structure:  # an older job finishing after a newer selection
            return
        two_theta, intensity, labels = result
        self.peaks = (two_theta, intensity, labels)
        self.plot.clear()
        if len(two_theta):
            self.plot.addItem(pg.BarGraphItem(x=two_theta, height=intensity, width=0.25, brush="#1f5fa8", pen=None))
            for k in np.argsort(intensity)[::-1][:LABELLED_PEAKS]:
                text = pg.TextItem(f"({labels[k]})", color="#333", anchor=(0.5, 1.0))
                text.setPos(float(two_theta[k]), float(intensity[k]))
                self.plot.addItem(text)
            self.plot.setYRange(0, 112, padding=0)
        self.status.setText(f"{self.title}: {len(two_theta)} reflections in 2θ {TWO_THETA_RANGE[0]:g}–"
                            f"{TWO_THETA_RANGE[1]:g}° ({self.wavelength_combo.currentText()}, pymatgen XRDCalculator)")
