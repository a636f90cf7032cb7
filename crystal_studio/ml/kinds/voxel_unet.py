"""Model kind ``voxel_unet``: the Court et al. 3-D U-Net segmenting voxel density maps into species
(:mod:`crystal_studio.ml.models.voxel_vae`), trained by :mod:`crystal_studio.ml.voxel_training`."""

from crystal_studio.ml.voxel_training import VoxelUNetTrainConfig as CONFIG
from crystal_studio.ml.voxel_training import rebuild_voxel_unet as rebuild
from crystal_studio.ml.voxel_training import resume_voxel as resume
from crystal_studio.ml.voxel_training import save_voxel_unet as save
from crystal_studio.ml.voxel_training import train_voxel as train

__all__ = ["CONFIG", "rebuild", "resume", "save", "train"]
