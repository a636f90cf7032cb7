"""What this installation runs on: library versions, the compute device, and the data it ships with
(their sources and licences). Shown in Help ▸ About and written into the ``--self-test`` report."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass

from crystal_studio import __version__
from crystal_studio.core.paths import RESOURCES
from crystal_studio.ml.runtime import library_version

# (label, distribution name, module whose __version__ to read when the distribution's metadata is
# missing, as for torch in the frozen app)
LIBRARIES = (("torch", "torch", "torch"), ("pymatgen", "pymatgen", "pymatgen.core"),
             ("CHGNet", "chgnet", "chgnet"), ("spglib", "spglib", "spglib"), ("NumPy", "numpy", "numpy"),
             ("BoTorch", "botorch", "botorch"), ("pyqtgraph", "pyqtgraph", "pyqtgraph"))


def software_versions() -> dict[str, str]:
    """Versions of Crystal Studio, Python, Qt, VTK and the scientific libraries (imports Qt and VTK, and a
    library whose metadata is missing)."""
    import PySide6
    from PySide6.QtCore import qVersion
    from vtkmodules.vtkCommonCore import vtkVersion

    versions = {"Crystal Studio": __version__, "Python": platform.python_version(),
                "Qt": qVersion(), "PySide6": PySide6.__version__, "VTK": vtkVersion.GetVTKVersion()}
    for label, dist, module in LIBRARIES:
        versions[label] = library_version(dist, module)
    versions["Platform"] = platform.platform()
    return versions


@dataclass
class ComputeDevice:
    """What torch can run on here; :attr:`statement` says it in one plain sentence."""

    cuda: bool
    gpus: list[str]
    cpu_cores: int
    torch_threads: int
    statement: str


def compute_device() -> ComputeDevice:
    """Ask torch (imported here) which device training and optimization will use."""
    import torch

    cores = os.cpu_count() or 1
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    if cuda:
        statement = (f"GPU: {', '.join(gpus)} (CUDA {torch.version.cuda}). Training and optimization run on it "
                     "when Settings ▸ Compute Device is Automatic or GPU.")
    else:
        statement = (f"CPU only: torch sees no CUDA GPU, so training and optimization run on this machine's {cores} "
                     f"CPU core{'s' if cores != 1 else ''}. Expect them to be many times slower than on a GPU: "
                     "one training epoch of a graph network on the full 33,000-crystal Materials Project set "
                     "takes about 260 s on 2 cores.")
    return ComputeDevice(cuda, gpus, cores, torch.get_num_threads(), statement)


@dataclass
class ShippedData:
    """One dataset or model file this installation ships, where it comes from and under what terms."""

    name: str
    files: str
    source: str
    licence: str


def shipped_data() -> list[ShippedData]:
    """The datasets and trained models shipped in resources/ and inside the CHGNet package."""
    from crystal_studio.ml.builtin import MP_ATTRIBUTION

    meta = json.loads((RESOURCES / "builtin" / "builtin.json").read_text(encoding="utf-8"))
    return [
        ShippedData("Built-in dataset", "resources/builtin/builtin.csv.gz",
                    f"{meta['structures']:,} hypothetical cubic ABX3 perovskites and binary prototypes generated "
                    f"by Crystal Studio (scripts/build_builtin_dataset.py); labels are {meta['label_source']}, "
                    f"from {meta['oracle']}.",
                    "part of Crystal Studio (MIT licence)"),
        ShippedData("Built-in CHGNet-label ensemble", "resources/builtin/builtin_model.pt",
                    "Property predictor trained by Crystal Studio on the built-in dataset.",
                    "part of Crystal Studio (MIT licence)"),
        ShippedData("Materials Project GNN and CHGNet-transfer ensembles",
                    "resources/builtin/mp_gnn.pt, resources/builtin/mp_chgnet_transfer.pt",
                    f"Formation energy and band gap predictors trained by Crystal Studio on {MP_ATTRIBUTION}.",
                    "trained on data under CC BY 4.0 (attribution above)"),
        ShippedData("CHGNet 0.3.0 pretrained weights", "inside the chgnet package",
                    "Deng et al., Nature Machine Intelligence 5, 1031 (2023); trained on the Materials Project "
                    "trajectory dataset (MPtrj). Used to relax candidates and as the frozen features of the "
                    "CHGNet-transfer models.",
                    "modified BSD licence (chgnet)"),
        ShippedData("Element colours and radii", "resources/elements.json",
                    "Jmol colours and atomic radii from pymatgen; covalent radii of Cordero et al., Dalton "
                    "Trans. 2832 (2008), via ASE (scripts/make_elements_json.py).",
                    "pymatgen: MIT; ASE: LGPL-2.1-or-later"),
    ]


def environment_report() -> dict:
    """Versions, compute device and shipped data as one JSON-ready dict (imports torch)."""
    return {"versions": software_versions(), "device": asdict(compute_device()),
            "shipped_data": [asdict(item) for item in shipped_data()]}
