"""The built-in property predictors, shipped as model files in resources/builtin/ and added to the
built-in project (and to ``crystal-studio new --builtin``) on first use:

- the CHGNet-label GNN ensemble trained on the built-in perovskite/binary dataset
  (``scripts/build_builtin_dataset.py``);
- two Materials Project ensembles of formation energy and band gap trained on ``mp_mtcgcnn_33k``
  (CC BY 4.0) by ``scripts/train_builtin_mp_models.py``: a differentiable GNN, which optimizers
  follow, and a CHGNet-transfer model, the more accurate one, which judges and screens.
"""

from __future__ import annotations

from crystal_studio.core.paths import RESOURCES
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project

BUILTIN_DIR = RESOURCES / "builtin"
# (file in resources/builtin, name of the model in a project), in the order they are added
BUILTIN_MODELS: tuple[tuple[str, str], ...] = (
    ("builtin_model.pt", "built-in CHGNet-label ensemble"),
    ("mp_gnn.pt", "Materials Project GNN ensemble"),
    ("mp_chgnet_transfer.pt", "Materials Project CHGNet-transfer ensemble"),
)
MP_ATTRIBUTION = ("Materials Project data (mp_mtcgcnn_33k as collected for MT-CGCNN, Sanyal et al., "
                  "arXiv:1811.05660; Jain et al., APL Materials 1, 011002 (2013)), licensed CC BY 4.0")


def ensure_builtin_models(project: Project) -> list[int]:
    """Ids of the shipped models in ``project``, importing each shipped file that is missing there
    (files this installation does not ship are left out)."""
    from crystal_studio.ml.predictor import import_model_file

    have = {record.name: record.id for record in model_store.list_models(project)}
    ids = []
    for filename, name in BUILTIN_MODELS:
        if name in have:
            ids.append(have[name])
        elif (BUILTIN_DIR / filename).exists():
            ids.append(import_model_file(project, BUILTIN_DIR / filename, name=name))
    return ids
