"""Model kind ``voxel_vae``: the Court et al. conditional deep-feature-consistent VAE on voxel density
maps, stored with the U-Net that segments its decodes (:mod:`crystal_studio.ml.models.voxel_vae`),
trained by :mod:`crystal_studio.ml.voxel_training`; samples crystals."""

from crystal_studio.ml.voxel_training import VoxelVAETrainConfig as CONFIG
from crystal_studio.ml.voxel_training import rebuild_voxel_vae as rebuild
from crystal_studio.ml.voxel_training import resume_voxel as resume
from crystal_studio.ml.voxel_training import save_voxel_vae as save
from crystal_studio.ml.voxel_training import train_voxel as train

__all__ = ["CONFIG", "rebuild", "resume", "save", "train"]
