"""Targets and constraints, optimizers, and candidate evaluation."""
