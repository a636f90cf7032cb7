"""The fast CPU training path (issue 8): the fused message kernel agrees with the plain autograd
definition in values and gradients (model parameters, soft types, lattice, fractional coordinates),
every training structure is used once per epoch, and a seeded run repeats its metrics."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from crystal_studio.ml.batching import batch_from_tensors, build_graphs, collate
from crystal_studio.ml.elements import N_ELEMENTS
from crystal_studio.ml.models import gnn
from crystal_studio.ml.models.gnn import CrystalGNN, GNNConfig, gated_messages
from crystal_studio.ml.training import EnsembleTrainer, TrainConfig, model_config_for
from tests.ml_synthetic import synthetic_crystals

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CUTOFF = 4.5


@pytest.fixture(scope="module")
def graphs():
    crystals = synthetic_crystals(24, seed=5)
    y = torch.tensor([[p["formation_energy_per_atom"], p["band_gap"]] for _, p in crystals]).numpy()
    return build_graphs([s for s, _ in crystals], CUTOFF, y)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks much smaller than a batch, so the chunk loop and its boundaries are exercised."""
    monkeypatch.setattr(gnn, "EDGE_CHUNK", 37)


def _model(dtype=torch.float64) -> CrystalGNN:
    torch.manual_seed(1)
    config = GNNConfig(n_targets=2, hidden=8, layers=2, cutoff=CUTOFF, n_gaussians=10, avg_neighbors=12.0)
    return CrystalGNN(config).to(dtype)


def test_fused_kernel_gradcheck(small_chunks):
    """First derivatives of the hand-written backward, against finite differences, for every input."""
    torch.manual_seed(0)
    n, e, width, g = 5, 90, 3, 4
    center = torch.sort(torch.randint(0, n, (e,))).values
    neighbor = torch.randint(0, n, (e,))
    inputs = (torch.randn(n, 2 * width, dtype=torch.float64, requires_grad=True),
              torch.randn(n, 2 * width, dtype=torch.float64, requires_grad=True),
              torch.rand(e, g, dtype=torch.float64, requires_grad=True),
              torch.randn(2 * width, g, dtype=torch.float64, requires_grad=True),
              torch.rand(e, dtype=torch.float64, requires_grad=True))

    def fused(xc, xn, basis, weight, env):
        return gated_messages(xc, xn, basis, weight, env, center, neighbor, fused=True)

    assert torch.autograd.gradcheck(fused, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    reference = gated_messages(*inputs, center, neighbor, fused=False)
    torch.testing.assert_close(fused(*inputs), reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_model_matches_plain_model_and_its_parameter_gradients(graphs, small_chunks, dtype):
    model = _model(dtype)
    batch = collate(graphs[:10]).to("cpu", dtype)
    results = {}
    for fused in (False, True):
        model.fused = fused
        model.zero_grad()
        pred = model(batch)
        pred.square().sum().backward()
        results[fused] = pred.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(results[True][0], results[False][0], **tol)
    for name, grad in results[False][1].items():
        assert grad.abs().sum() > 0 or "out" in name or name.startswith(("head", "norm")), name
        torch.testing.assert_close(results[True][1][name], grad, **tol, msg=name)


def test_fused_model_matches_plain_model_for_design_inputs(graphs, small_chunks):
    """The SMOACS case: soft types, lattice and coordinates requiring gradients; the gradients are
    finite, nonzero and the same as through the plain autograd model."""
    model = _model().eval()
    base = collate(graphs[:4]).to("cpu", torch.float64)
    soft0 = torch.nn.functional.one_hot(base.types, N_ELEMENTS).double() * 0.9 + 0.1 / N_ELEMENTS
    grads = {}
    for fused in (False, True):
        model.fused = fused
        soft = soft0.clone().requires_grad_()
        frac = base.frac.clone().requires_grad_()
        lattice = base.lattice.clone().requires_grad_()
        batch = batch_from_tensors(soft, frac, lattice, base.n_atoms)
        batch = replace(batch, center=base.center, neighbor=base.neighbor, shift=base.shift)
        model(batch).sum().backward()
        grads[fused] = [t.grad for t in (soft, frac, lattice)]
    for fast, plain in zip(grads[True], grads[False], strict=True):
        assert torch.isfinite(fast).all() and fast.abs().sum() > 0
        torch.testing.assert_close(fast, plain, rtol=1e-9, atol=1e-12)


def test_fused_model_builds_edges_itself_and_backpropagates(small_chunks):
    """batch_from_tensors without edges (how the optimizers call the model), float32 default path."""
    model = _model(torch.float32)
    structure = synthetic_crystals(1, seed=2)[0][0]
    graph = build_graphs([structure], CUTOFF)[0]
    soft = torch.nn.functional.one_hot(graph.types, N_ELEMENTS).float().requires_grad_()
    frac = graph.frac.clone().requires_grad_()
    lattice = graph.lattice.unsqueeze(0).clone().requires_grad_()
    model(batch_from_tensors(soft, frac, lattice, [graph.n_atoms])).sum().backward()
    for t in (soft, frac, lattice):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def _trainer(graphs, **changes) -> EnsembleTrainer:
    config = TrainConfig(targets=["formation_energy_per_atom", "band_gap"], epochs=3, ensemble=1, seed=4, batch_size=5,
                         lr=3e-3, hidden=8, layers=2, cutoff=CUTOFF, n_gaussians=10, device="cpu", **changes)
    train, val = graphs[:19], graphs[19:]
    y = torch.stack([g.y for g in train])
    return EnsembleTrainer(config, model_config_for(config, train), train, val, y.mean(0), y.std(0),
                           torch.device("cpu"))


def test_every_training_structure_is_used_once_per_epoch(graphs):
    trainer = _trainer(graphs)
    seen_orders = set()
    for epoch in range(3):
        batches = trainer.epoch_batches(0, epoch)
        assert len(batches) == trainer.batches_per_epoch == 4
        assert all(len(b) <= 5 for b in batches)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(trainer.train)))
        assert trainer.epoch_batches(0, epoch) == batches  # a function of seed, member and epoch
        seen_orders.add(tuple(flat))
    assert len(seen_orders) == 3  # reshuffled every epoch


def test_same_seed_same_metrics(graphs, small_chunks):
    runs = []
    for _ in range(2):
        trainer = _trainer(graphs)
        metrics = []
        trainer.fit(on_epoch=lambda step, m, out=metrics: out.append(m))
        runs.append(metrics)
    assert len(runs[0]) == 3
    for a, b in zip(*runs, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


def test_fused_and_plain_training_agree(graphs, small_chunks, monkeypatch):
    """A short seeded run with the fused kernel ends where the plain autograd run ends (float noise)."""
    finals = []
    for fused in (False, True):
        monkeypatch.setattr(gnn, "gated_messages", _forced(fused))
        trainer = _trainer(graphs)
        metrics = []
        trainer.fit(on_epoch=lambda step, m, out=metrics: out.append(m))
        finals.append(metrics[-1])
    for key in finals[0]:
        assert finals[1][key] == pytest.approx(finals[0][key], rel=1e-3, abs=1e-5), key


def _forced(fused: bool):
    original = gated_messages

    def call(*args, fused_arg=None, **kwargs):
        args = args[:7]
        return original(*args, fused=fused)

    return call
