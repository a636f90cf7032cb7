"""The built-in property predictor: an ensemble trained on the built-in dataset, shipped as a model
file in resources/builtin/ and added to the built-in project on first use."""

from __future__ import annotations

from crystal_studio.core.paths import RESOURCES
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project

BUILTIN_MODEL_FILE = RESOURCES / "builtin" / "builtin_model.pt"
BUILTIN_MODEL_NAME = "built-in CHGNet-label ensemble"


def ensure_builtin_model(project: Project) -> int | None:
    """Id of the built-in model in ``project``, importing the shipped file when it is missing there;
    None when this installation ships no model file."""
    for record in model_store.list_models(project):
        if record.name == BUILTIN_MODEL_NAME:
            return record.id
    if not BUILTIN_MODEL_FILE.exists():
        return None
    from crystal_studio.ml.predictor import import_model_file

    return import_model_file(project, BUILTIN_MODEL_FILE, name=BUILTIN_MODEL_NAME)
