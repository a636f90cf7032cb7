"""SMOACS (Fujii et al., arXiv 2410.08562): gradient optimization of soft perovskites; see
:mod:`crystal_studio.design.optimizers.smoacs`. With ``seed_run`` the initial site logits come from
the ABX3 formulas a sampling run drew (e.g. a composition VAE's; the composition → perovskite path)."""

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.formulas import perovskite_triple
from crystal_studio.design.methods import MethodRequest
from crystal_studio.design.optimizers.settings import SmoacsConfig
from crystal_studio.store.samples import list_samples

CONFIG = SmoacsConfig


def seed_triples(project, run_id: int) -> list[tuple[str, str, str]]:
    """(A, B, X) of the compositionally valid ABX3 formulas of sampling run ``run_id``, most drawn first."""
    samples = [s for s in list_samples(project, run_id) if s.checks.get("compositionally_valid")]
    triples = [t for t in (perovskite_triple(s.formula) for s in samples) if t is not None]
    if not triples:
        raise CrystalStudioError(f"seed_run: run {run_id} has no valid ABX3 formula among its {len(samples)} valid "
                                 "formula(s) (sample a composition model first)")
    return triples


def build(request: MethodRequest, config: SmoacsConfig):
    from crystal_studio.design.optimizers.smoacs import SmoacsOptimizer

    triples = seed_triples(request.project, config.seed_run) if config.seed_run is not None else None
    return SmoacsOptimizer(request.spec, request.predictor, request.n_candidates, request.n_steps, request.seed,
                           request.device, config, triples)
