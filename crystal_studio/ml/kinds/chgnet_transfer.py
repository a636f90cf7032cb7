"""Model kind ``chgnet_transfer``: MLP heads on frozen CHGNet descriptors
(:mod:`crystal_studio.ml.models.chgnet_transfer`), trained by :mod:`crystal_studio.ml.transfer_training`."""

from crystal_studio.ml.transfer_training import rebuild_transfer as rebuild
from crystal_studio.ml.transfer_training import resume_transfer as resume
from crystal_studio.ml.transfer_training import save_transfer as save
from crystal_studio.ml.transfer_training import train_transfer as train

__all__ = ["rebuild", "resume", "save", "train"]
