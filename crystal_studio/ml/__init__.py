"""Machine learning: crystals as tensors, property predictors, training jobs.

Importing this package does not import torch; its modules do (import them lazily from the CLI and GUI).
"""
