"""The crystal GNN: neighbour lists, gradients by finite differences, smoothness at the cutoff and the
symmetries a property of a crystal must have."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.ml.batching import batch_from_tensors, build_graphs, collate, neighbor_list, structure_arrays
from crystal_studio.ml.elements import N_ELEMENTS, element_feature_table, element_index
from crystal_studio.ml.models.gnn import CrystalGNN, GNNConfig
from crystal_studio.ml.predictor import CrystalPredictor, load_state, predictor_from_parts, state_bytes

CUTOFF = 4.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> CrystalGNN:
    torch.manual_seed(0)
    config = GNNConfig(n_targets=2, hidden=16, layers=2, cutoff=CUTOFF, n_gaussians=12, avg_neighbors=10.0)
    return CrystalGNN(config).double().eval()


def triclinic() -> Structure:
    return Structure(Lattice.from_parameters(3.3, 3.9, 4.6, 78, 96, 107), ["Ga", "N", "O"],
                     [[0.05, 0.12, 0.31], [0.61, 0.47, 0.88], [0.33, 0.79, 0.12]])


def perovskite(a: float = 3.9) -> Structure:
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def tensors(structure: Structure, soft: bool = False):
    types, frac, lattice = structure_arrays(structure)
    types = torch.from_numpy(types)
    if soft:
        types = torch.nn.functional.one_hot(types, N_ELEMENTS).double()
    return types, torch.from_numpy(frac), torch.from_numpy(lattice).unsqueeze(0)


def predict(model, types, frac, lattice, n_atoms=None) -> torch.Tensor:
    n_atoms = n_atoms if n_atoms is not None else [frac.shape[0]]
    return model(batch_from_tensors(types, frac, lattice, n_atoms))


# ------------------------------------------------------------------------------------ neighbour lists


@pytest.mark.parametrize("cutoff", [2.5, 5.0, 7.5])
def test_neighbor_list_matches_pymatgen(cutoff):
    structure = triclinic()
    structure.translate_sites([0], [-1.3, 2.2, 0.4], frac_coords=True, to_unit_cell=False)  # unwrapped site
    graph = build_graphs([structure], cutoff)[0]
    frac, lattice = graph.frac.double(), graph.lattice.double()
    vectors = (frac[graph.neighbor.long()] + graph.shift.double() - frac[graph.center.long()]) @ lattice
    ours = np.sort(vectors.norm(dim=1).numpy())
    _, _, _, distances = structure.get_neighbor_list(cutoff)
    np.testing.assert_allclose(ours, np.sort(distances), atol=1e-5)


def test_neighbor_list_of_a_batch_is_the_union_of_its_crystals():
    structures = [triclinic(), perovskite(), perovskite(4.4)]
    singles = [neighbor_list(*_flat([s]), 5.0) for s in structures]
    center, _, _ = neighbor_list(*_flat(structures), 5.0, max_candidates=2000)  # forces several chunks
    assert center.shape[0] == sum(c.shape[0] for c, _, _ in singles)


def _flat(structures):
    arrays = [structure_arrays(s) for s in structures]
    frac = torch.from_numpy(np.concatenate([f for _, f, _ in arrays]))
    lattice = torch.from_numpy(np.stack([lat for _, _, lat in arrays]))
    return frac, lattice, torch.tensor([len(t) for t, _, _ in arrays])


# ------------------------------------------------------------------------------------ gradients


def test_gradients_match_finite_differences(model):
    """d(output)/d(soft types, lattice, fractional coordinates), float64, two crystals in one batch.

    The neighbour list is built once (no pair lies near the cutoff, so a finite-difference step does
    not change it); soft types are checked on the columns of the elements present plus two others.
    """
    t1, f1, l1 = tensors(triclinic(), soft=True)
    t2, f2, l2 = tensors(perovskite(4.1), soft=True)
    columns = torch.tensor([element_index(e) for e in ("Ga", "N", "O", "Sr", "Ti", "Fe", "Cl")])
    full = torch.cat([t1, t2])
    types = full[:, columns].clone().requires_grad_()
    frac = torch.cat([f1, f2]).requires_grad_()
    lattice = torch.cat([l1, l2]).requires_grad_()
    edges = batch_from_tensors(full, frac.detach(), lattice.detach(), [3, 5]).with_edges(CUTOFF)
    _assert_no_pair_near_cutoff(frac.detach(), lattice.detach(), [3, 5])

    def f(sub, fr, lat):
        soft = full.index_copy(1, columns, sub)
        return model(replace(edges, types=soft, frac=fr, lattice=lat))

    assert torch.autograd.gradcheck(f, (types, frac, lattice), eps=1e-6, atol=1e-6, rtol=1e-4)


def _assert_no_pair_near_cutoff(frac, lattice, n_atoms):
    """Finite differences are only meaningful if no neighbour crosses the cutoff under the step."""
    batch = batch_from_tensors(torch.zeros(len(frac), dtype=torch.long), frac, lattice, n_atoms).with_edges(
        CUTOFF + 0.5)
    from crystal_studio.ml.models.gnn import edge_lengths

    assert (edge_lengths(batch) - CUTOFF).abs().min() > 1e-3


def test_soft_one_hot_types_equal_hard_types(model):
    hard = predict(model, *tensors(triclinic()))
    soft = predict(model, *tensors(triclinic(), soft=True))
    torch.testing.assert_close(hard, soft, rtol=1e-12, atol=1e-12)


def test_soft_types_interpolate_smoothly(model):
    """Mixing two elements on a site moves the output continuously between the two crystals."""
    types, frac, lattice = tensors(perovskite(), soft=True)
    ti, zr = element_index("Ti"), element_index("Zr")
    outputs = []
    for w in np.linspace(0, 1, 5):
        mixed = types.clone()
        mixed[1, ti], mixed[1, zr] = 1 - w, w
        outputs.append(predict(model, mixed, frac, lattice).detach())
    steps = torch.stack([(b - a).abs().max() for a, b in zip(outputs, outputs[1:], strict=False)])
    assert steps.max() < 4 * steps.min() + 1e-9


# ------------------------------------------------------------------------------------ cutoff


def _cubic_output(model, a):
    types, frac, _ = tensors(Structure(Lattice.cubic(a), ["Cu"], [[0, 0, 0]]))
    lattice = torch.eye(3, dtype=torch.float64).unsqueeze(0) * a
    return predict(model, types, frac, lattice).detach()


def test_output_is_continuous_when_neighbours_cross_the_cutoff(model):
    """Simple cubic: the six nearest neighbours sit exactly at the cutoff when a = cutoff."""
    jumps = [(_cubic_output(model, CUTOFF + d) - _cubic_output(model, CUTOFF - d)).abs().max().item()
             for d in (1e-2, 1e-3, 1e-4)]
    assert jumps[2] < 1e-5
    # a jump would stay constant as the step shrinks; a C1 function's difference shrinks with it
    assert jumps[2] < 0.2 * jumps[1] + 1e-12 and jumps[1] < 0.2 * jumps[0] + 1e-12


def test_gradient_is_continuous_at_the_cutoff(model):
    def grad_at(a):
        types, frac, _ = tensors(Structure(Lattice.cubic(a), ["Cu"], [[0, 0, 0]]))
        lattice = (torch.eye(3, dtype=torch.float64) * a).unsqueeze(0).requires_grad_()
        predict(model, types, frac, lattice).sum().backward()
        return lattice.grad

    torch.testing.assert_close(grad_at(CUTOFF - 1e-6), grad_at(CUTOFF + 1e-6), atol=1e-5, rtol=1e-4)


def test_edges_beyond_the_cutoff_contribute_nothing(model):
    types, frac, lattice = tensors(triclinic())
    batch = batch_from_tensors(types, frac, lattice, [3])
    torch.testing.assert_close(model(batch.with_edges(CUTOFF)), model(batch.with_edges(CUTOFF + 2.0)),
                               rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ symmetries


def test_permuting_sites_changes_nothing(model):
    types, frac, lattice = tensors(perovskite(4.05))
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(predict(model, types, frac, lattice), predict(model, types[perm], frac[perm], lattice),
                               rtol=1e-10, atol=1e-10)


def test_rotating_the_crystal_changes_nothing(model):
    types, frac, lattice = tensors(triclinic())
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    rotated = lattice @ q.T  # rotates every lattice vector (rows)
    torch.testing.assert_close(predict(model, types, frac, lattice), predict(model, types, frac, rotated),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("wrap", [False, True])
def test_moving_the_origin_changes_nothing(model, wrap):
    types, frac, lattice = tensors(triclinic())
    shifted = frac + torch.tensor([0.37, -0.81, 1.29], dtype=torch.float64)
    if wrap:
        shifted = shifted % 1.0
    torch.testing.assert_close(predict(model, types, frac, lattice), predict(model, types, shifted, lattice),
                               rtol=1e-10, atol=1e-10)


def test_supercell_predicts_the_same_intensive_properties(model):
    structure = triclinic()
    supercell = structure.copy()
    supercell.make_supercell([2, 1, 1])
    torch.testing.assert_close(predict(model, *tensors(structure)), predict(model, *tensors(supercell)),
                               rtol=1e-9, atol=1e-9)


def test_batched_predictions_equal_one_by_one(model):
    structures = [triclinic(), perovskite(), perovskite(4.4)]
    graphs = build_graphs(structures, CUTOFF)
    batched = model(collate(graphs).to("cpu", torch.float64))
    singles = torch.cat([model(collate([g]).to("cpu", torch.float64)) for g in graphs])
    torch.testing.assert_close(batched, singles, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------------ ensembles, storage


def test_ensemble_mean_and_spread_in_physical_units():
    torch.manual_seed(1)
    config = GNNConfig(n_targets=2, hidden=8, layers=1, cutoff=CUTOFF, n_gaussians=8)
    predictor = CrystalPredictor(config, ["band_gap", "formation_energy_per_atom"], members=3).eval()
    predictor.set_normalization([1.0, -2.0], [0.5, 3.0])
    batch = collate(build_graphs([triclinic(), perovskite()], CUTOFF))
    mean, std = predictor(batch)
    members = torch.stack([m(batch) for m in predictor.members]) * torch.tensor([0.5, 3.0]) + torch.tensor([1.0, -2.0])
    torch.testing.assert_close(mean, members.mean(0))
    torch.testing.assert_close(std, members.std(0, correction=0))
    assert mean.shape == std.shape == (2, 2) and (std > 0).all()
    single = CrystalPredictor(config, ["band_gap", "formation_energy_per_atom"], members=1).eval()
    assert (single(batch)[1] == 0).all()


def test_checkpoint_round_trip_is_weights_only():
    config = GNNConfig(n_targets=1, hidden=8, layers=1, cutoff=CUTOFF, n_gaussians=8)
    predictor = CrystalPredictor(config, ["band_gap"], members=2).eval()
    predictor.set_normalization([1.5], [0.7])
    hyper = {"model": config.as_dict(), "members": 2}
    again = predictor_from_parts(hyper, ["band_gap"], load_state(state_bytes(predictor), "test"), "test")
    batch = collate(build_graphs([perovskite()], CUTOFF))
    torch.testing.assert_close(predictor(batch)[0], again(batch)[0])

    buffer = io.BytesIO()
    torch.save({"payload": _Evil()}, buffer)  # arbitrary objects must never be unpickled
    with pytest.raises(CrystalStudioError, match="weights-only"):
        load_state(buffer.getvalue(), "evil.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("this must not run",))


def test_element_table_is_standardized_and_complete():
    table = element_feature_table()
    assert table.shape[0] == N_ELEMENTS and np.isfinite(table).all()
    np.testing.assert_allclose(table.mean(axis=0), 0, atol=1e-9)


def test_bfloat16_autocast_stays_close_to_full_precision():
    """The mixed-precision path used on GPUs (checked here with CPU autocast): geometry in float32."""
    torch.manual_seed(2)
    model = CrystalGNN(GNNConfig(n_targets=2, hidden=16, layers=2, cutoff=CUTOFF, n_gaussians=12)).eval()
    batch = collate(build_graphs([triclinic(), perovskite()], CUTOFF))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(batch)
    assert mixed.dtype == torch.bfloat16
    torch.testing.assert_close(mixed.float(), model(batch), atol=0.05, rtol=0.05)


def test_spread_scale_calibrates_the_spread_at_one_sigma():
    from crystal_studio.ml.metrics import regression_metrics, spread_scale

    rng = np.random.default_rng(0)
    true = rng.normal(size=(2000, 2))
    std = np.full((2000, 2), 0.1)  # overconfident: the real error scale is 0.5 for target 0, 2 for target 1
    pred = true + rng.normal(size=(2000, 2)) * np.array([0.5, 2.0])
    scale = spread_scale(true, pred, std)
    assert scale == pytest.approx([5.0, 20.0], rel=0.1)
    calibrated = regression_metrics(true[:, 0], pred[:, 0], std[:, 0] * scale[0])
    assert calibrated["within_1sigma"] == pytest.approx(0.683, abs=0.01)
    assert calibrated["within_2sigma"] == pytest.approx(0.954, abs=0.03)
    assert list(spread_scale(true, pred, np.zeros_like(std))) == [1.0, 1.0]  # one member: nothing to scale
