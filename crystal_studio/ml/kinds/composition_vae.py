"""Model kind ``composition_vae``: a VAE over formula fraction vectors with a decomposition-class head
(:mod:`crystal_studio.ml.models.composition_vae`), trained by :mod:`crystal_studio.ml.composition_training`."""

from crystal_studio.ml.composition_training import CONFIG
from crystal_studio.ml.composition_training import rebuild_composition_vae as rebuild
from crystal_studio.ml.composition_training import resume_composition_vae as resume
from crystal_studio.ml.composition_training import save_composition_vae as save
from crystal_studio.ml.composition_training import train_composition_vae as train

__all__ = ["CONFIG", "rebuild", "resume", "save", "train"]
