"""CHGNet as an oracle: energy, forces, stress, magnetic moments and relaxation with a free cell.

CHGNet's weights ship inside its wheel, so nothing is downloaded at run time. Energies are eV/atom,
forces eV/Å, stresses GPa, magnetic moments μB per site.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress

CPU_THREADS = 1  # torch threads for CHGNet on CPU: on cells of <= 20 atoms a second thread made FIRE steps 2.4x slower


@contextlib.contextmanager
def chgnet_threads(device):
    """On CPU, torch threads = min(torch's, the cores this process may use, :data:`CPU_THREADS`) inside
    the block, restored after; nothing changes on a GPU."""
    import torch

    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, min(before, cores, CPU_THREADS)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class OracleResult:
    """Single-point CHGNet prediction for one structure."""

    energy_per_atom: float  # eV/atom
    forces: np.ndarray  # (nsites, 3) eV/Å
    stress: np.ndarray  # (3, 3) GPa, as CHGNet.predict_structure returns it
    magmoms: np.ndarray  # (nsites,) μB

    @property
    def total_magnetic_moment(self) -> float:
        """Sum of CHGNet's site moment magnitudes (μB per cell)."""
        return float(np.sum(self.magmoms))


@dataclass
class Relaxation:
    """Outcome of relaxing one structure."""

    initial: Structure
    final: Structure
    energy_per_atom: float  # eV/atom, of the final structure
    converged: bool
    steps: int
    max_force: float  # eV/Å, at the end
    magmoms: np.ndarray  # μB per site, of the final structure
    frames: list[tuple[Structure, float]] = field(default_factory=list)
    """With ``relax(..., frames=K)``: up to K intermediate snapshots (structure, energy in eV/atom), evenly
    spread over the optimizer steps before the final one, first step (the initial structure) included."""


_MODEL_LOCK = threading.Lock()
_MODELS: dict[str, object] = {}


def _load_model(device: str):
    """Load (once per device) the CHGNet model that ships inside the chgnet wheel."""
    with _MODEL_LOCK:
        if device not in _MODELS:
            from chgnet.model import CHGNet

            # CHGNet announces itself on stdout, which belongs to --json documents and JSON-lines output
            with contextlib.redirect_stdout(sys.stderr):
                _MODELS[device] = CHGNet.load(use_device=device, verbose=False)
        return _MODELS[device]


def resolve_device(device: str = "auto") -> str:
    """Map 'auto' to 'cuda' when torch sees a GPU, else 'cpu'."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ChgnetOracle:
    """Batched CHGNet predictions and cancellable relaxations on CPU or GPU."""

    def __init__(self, device: str = "auto"):
        self.device = resolve_device(device)
        self.model = _load_model(self.device)
        self._calculator = None

    @property
    def calculator(self):
        """An ASE calculator wrapping this oracle's model (created on first use)."""
        if self._calculator is None:
            from chgnet.model.dynamics import CHGNetCalculator

            with contextlib.redirect_stdout(sys.stderr):  # it prints 'CHGNet will run on ...'; stdout is for --json
                self._calculator = CHGNetCalculator(model=self.model, use_device=self.device,
                                                    on_isolated_atoms="ignore")
        return self._calculator

    @property
    def version(self) -> str:
        """Model and package version, e.g. 'CHGNet 0.3.0 (chgnet 0.4.2)'."""
        import chgnet

        return f"CHGNet {getattr(self.model, 'version', '?')} (chgnet {chgnet.__version__})"

    def predict(self, structures: list[Structure], batch_size: int = 16) -> list[OracleResult]:
        """Single-point energies, forces, stresses and moments for a list of structures."""
        if not structures:
            return []
        raw = self.model.predict_structure(list(structures), task="efsm", batch_size=batch_size)
        if isinstance(raw, dict):
            raw = [raw]
        return [
            OracleResult(float(r["e"]), np.asarray(r["f"]), np.asarray(r["s"]), np.abs(np.asarray(r["m"])))
            for r in raw
        ]

    def relax(
        self,
        structures: list[Structure],
        fmax: float = 0.05,
        max_steps: int = 300,
        relax_cell: bool = True,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        frames: int = 0,
        on_step: Callable[[int, int, float], None] | None = None,
    ) -> list[Relaxation]:
        """Relax each structure with FIRE (cell free unless ``relax_cell`` is False).

        ``fmax`` is the force criterion in eV/Å. Cancellation is honoured between optimizer steps.
        ``frames`` > 0 also keeps up to that many intermediate snapshots per relaxation in
        :attr:`Relaxation.frames`, evenly spread over the trajectory before the final structure; their
        energies are the ones CHGNet computed at those steps (no extra CHGNet call). ``on_step`` is
        called after every optimizer step with (index of the structure, steps so far, largest force in
        eV/Å), for progress within one relaxation.
        """
        from ase.filters import FrechetCellFilter
        from ase.optimize import FIRE
        from pymatgen.io.ase import AseAtomsAdaptor

        cancel = cancel or CancelToken()
        calc = self.calculator
        results = []
        for i, structure in enumerate(structures):
            cancel.check()
            atoms = AseAtomsAdaptor.get_atoms(structure)
            atoms.calc = calc
            target = FrechetCellFilter(atoms) if relax_cell else atoms
            optimizer = FIRE(target, logfile=None)
            optimizer.attach(cancel.check, interval=1)
            if on_step is not None:
                optimizer.attach(lambda k=i, a=atoms, opt=optimizer: on_step(
                    k, int(opt.nsteps), float(np.max(np.linalg.norm(a.get_forces(), axis=1)))), interval=1)
            trajectory: list[tuple[object, float]] = []  # (atoms copy, eV/atom) after each step, step 0 first
            if frames > 0:
                optimizer.attach(lambda a=atoms, t=trajectory: t.append(
                    (a.copy(), float(a.get_potential_energy() / len(a)))), interval=1)  # cached: no new call
            converged = bool(optimizer.run(fmax=fmax, steps=max_steps))
            final = AseAtomsAdaptor.get_structure(atoms)
            forces = atoms.get_forces()
            results.append(
                Relaxation(
                    initial=structure,
                    final=final,
                    energy_per_atom=float(atoms.get_potential_energy() / len(atoms)),
                    converged=converged,
                    steps=int(optimizer.nsteps),
                    max_force=float(np.max(np.linalg.norm(forces, axis=1))),
                    magmoms=np.abs(np.asarray(calc.results.get("magmoms", np.zeros(len(atoms))))),
                    frames=_spread(trajectory[:-1], frames),
                )
            )
            progress(ProgressEvent(i + 1, len(structures), f"relaxed {final.composition.reduced_formula}"))
        return results

    def equation_of_state(self, structure: Structure, strain: float = 0.06, points: int = 7) -> EquationOfState:
        """Birch–Murnaghan fit to energies at isotropically scaled volumes (±``strain`` in volume,
        ions kept at their fractional positions), evaluated in one batch."""
        from pymatgen.analysis.eos import EOS

        strained = []
        for scale in np.linspace(1 - strain, 1 + strain, points):
            st = structure.copy()
            st.scale_lattice(structure.volume * scale)
            strained.append(st)
        energies = [r.energy_per_atom * len(structure) for r in self.predict(strained, batch_size=points)]
        fit = EOS("birch_murnaghan").fit([st.volume for st in strained], energies)
        return EquationOfState(float(fit.v0), float(fit.e0), float(fit.b0_GPa))

    def bulk_modulus(self, structure: Structure, strain: float = 0.06, points: int = 7) -> float:
        """Bulk modulus (GPa) from :meth:`equation_of_state`."""
        return self.equation_of_state(structure, strain, points).bulk_modulus


def _spread(trajectory: list[tuple[object, float]], n: int) -> list[tuple[Structure, float]]:
    """Up to ``n`` snapshots of ``trajectory`` (ASE atoms, eV/atom) at evenly spaced steps, first one
    included, as (structure, eV/atom)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    if n <= 0 or not trajectory:
        return []
    k = min(n, len(trajectory))
    picked = [trajectory[i * len(trajectory) // k] for i in range(k)]
    return [(AseAtomsAdaptor.get_structure(atoms), energy) for atoms, energy in picked]


@dataclass
class EquationOfState:
    """Birch–Murnaghan fit: equilibrium volume (Å³ per cell), energy (eV per cell), bulk modulus (GPa)."""

    volume: float
    energy: float
    bulk_modulus: float
