"""Model kind ``crystal_vae``: the Crystal-LSBO family — lattice, coordinate and element VAEs joined by a
combined VAE, with property heads (:mod:`crystal_studio.ml.models.crystal_vae`), trained by
:mod:`crystal_studio.ml.crystal_vae_training`."""

from crystal_studio.ml.crystal_vae_training import CONFIG
from crystal_studio.ml.crystal_vae_training import rebuild_crystal_vae as rebuild
from crystal_studio.ml.crystal_vae_training import resume_crystal_vae as resume
from crystal_studio.ml.crystal_vae_training import save_crystal_vae as save
from crystal_studio.ml.crystal_vae_training import train_crystal_vae as train

__all__ = ["CONFIG", "rebuild", "resume", "save", "train"]
