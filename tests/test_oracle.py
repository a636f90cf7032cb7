"""CHGNet oracle: single points, relaxation with a free cell, cancellation, equation of state."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystal_studio.core.errors import Cancelled
from crystal_studio.core.progress import CancelToken

pytest.importorskip("chgnet")


@pytest.fixture(scope="module")
def oracle():
    from crystal_studio.oracles.chgnet_oracle import ChgnetOracle

    return ChgnetOracle("cpu")


def rocksalt(a: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_predict_batches_and_shapes(oracle):
    results = oracle.predict([rocksalt(5.6), rocksalt(5.8)])
    assert len(results) == 2
    assert results[0].forces.shape == (8, 3) and results[0].stress.shape == (3, 3)
    assert np.abs(results[0].forces).max() < 1e-3  # forces vanish by symmetry
    assert -4.0 < results[0].energy_per_atom < -3.0  # NaCl: about -3.4 eV/atom
    assert "CHGNet" in oracle.version


def test_relaxation_with_free_cell_converges(oracle):
    start = rocksalt(6.2)
    start.perturb(0.05, min_distance=0.01)
    progress = []
    [result] = oracle.relax([start], fmax=0.05, max_steps=300, progress=progress.append)
    assert result.converged and result.max_force < 0.05
    assert 5.4 < result.final.lattice.a < 5.9  # CHGNet's NaCl is near 5.6-5.7 Å
    assert result.energy_per_atom < oracle.predict([start])[0].energy_per_atom
    assert progress[-1].step == 1 and progress[-1].total == 1


def test_relaxation_is_cancellable(oracle):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        oracle.relax([rocksalt(6.0)], cancel=token)


def test_bulk_modulus_is_physical(oracle):
    [relaxed] = oracle.relax([rocksalt(5.65)])
    bulk = oracle.bulk_modulus(relaxed.final)
    assert 15 < bulk < 40  # NaCl: experiment ~24 GPa


def test_loading_chgnet_keeps_stdout_clean_for_json_output():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "from crystal_studio.oracles.chgnet_oracle import _load_model; "
                           "_load_model('cpu')"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "CHGNet" in done.stderr
