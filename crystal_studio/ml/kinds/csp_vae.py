"""Model kind ``csp_vae``: the composition-conditioned crystal VAE with conservative and plain energy
surrogates of LCOMs (:mod:`crystal_studio.ml.models.csp_vae`), trained by
:mod:`crystal_studio.ml.csp_vae_training`."""

from crystal_studio.ml.csp_vae_training import CONFIG
from crystal_studio.ml.csp_vae_training import rebuild_csp_vae as rebuild
from crystal_studio.ml.csp_vae_training import resume_csp_vae as resume
from crystal_studio.ml.csp_vae_training import save_csp_vae as save
from crystal_studio.ml.csp_vae_training import train_csp_vae as train

__all__ = ["CONFIG", "rebuild", "resume", "save", "train"]
