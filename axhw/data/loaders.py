"""``load``: offline, seeded, standardized train/test tensors for the paper's applications.

Protocol (paper section 4.1 and ``docs/spec.md`` section 4): 80 % train / 20 % test, stratified by class and
seeded; features standardized with the mean and standard deviation of the training split only (so nothing
about the test set leaks into training), constant features keeping std 1.

A **validation split** (``val_fraction`` > 0) is carved from the training data: seeded, stratified, after the
``limit`` subset, before standardization (the statistics come from what is left to train on). Every choice a
study makes (the minimum-power configuration, accuracy bounds, ApproxAnn's switches) is made on it, and the
test split only scores what was chosen, so test-set noise cannot pick the winner (docs/power.md, "Selection on
validation data").

MNIST instead keeps its standard 60,000 / 10,000 split (LeCun et al.; what every MNIST number refers to) and
scales pixels to ``[0, 1]`` by ``/255`` rather than per-pixel standardization: border pixels are almost
always 0, so their z-scores would reach the hundreds and waste the fixed-point input range of the hardware
model, while ``/255`` maps the 8-bit grey levels exactly onto one fixed-point interval.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from axhw.data import readers
from axhw.data.acquire import verified
from axhw.data.registry import APPLICATIONS, DATASETS, DataError, check_file, dataset_info, resolve_data_dir

__all__ = [
    "MNIST_DIR_ENV",
    "Dataset",
    "carve_validation",
    "load",
    "status",
    "stratified_subset",
]

#: Environment variable naming a folder with the user's own standard MNIST IDX files (raw or ``.gz``).
MNIST_DIR_ENV = "AXHW_MNIST_DIR"


@dataclass(frozen=True)
class Dataset:
    """A train/test split ready for training.

    ``x = (raw - mean) / std`` for both splits, with ``mean``/``std`` from the training split (shape
    ``feature_shape``), so the transform can be applied to new raw samples or undone.

    Attributes:
        name: data set name (``mnist`` for both MNIST applications).
        x_train: ``(N, *feature_shape)`` float32.
        y_train: ``(N,)`` int64 class indices ``0..n_classes-1``.
        x_test: ``(M, *feature_shape)`` float32.
        y_test: ``(M,)`` int64.
        n_classes: outputs of the paper's network (satimage: 7, class 5 never occurs).
        feature_shape: shape of one sample: ``(n_features,)`` or ``(1, 28, 28)`` for the CNN view.
        mean: per-feature offset subtracted from the raw features.
        std: per-feature scale the centred features were divided by.
        class_names: one name per class index.
        x_val: ``(V, *feature_shape)`` float32, carved from the training data (``V = 0`` without a validation split).
        y_val: ``(V,)`` int64.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    feature_shape: tuple[int, ...]
    mean: torch.Tensor
    std: torch.Tensor
    class_names: tuple[str, ...]
    x_val: torch.Tensor
    y_val: torch.Tensor

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``train``, ``val`` or ``test``.

        Raises:
            DataError: ``val`` asked of a data set without a validation split.
        """
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}: valid splits are 'train', 'val', 'test'")
        x, y = getattr(self, f"x_{name}"), getattr(self, f"y_{name}")
        if name == "val" and len(y) == 0:
            raise DataError(f"{self.name} has no validation split: train with val_fraction > 0 (--val-fraction)")
        return x, y

    @property
    def n_features(self) -> int:
        """Inputs of one sample, flattened."""
        return math.prod(self.feature_shape)


def _cache_files(name: str, data_dir: Path) -> list[Path]:
    """The verified cache files of a data set, or a DataError that tells the user the fetch command."""
    info = DATASETS[name]
    paths = [data_dir / name / s.name for s in info.files]
    for path, spec in zip(paths, info.files, strict=True):
        if not path.exists():
            raise DataError(f"dataset {name!r} is not available offline ({path} missing): run "
                            f"`axhw data fetch {name}` first")
        try:
            check_file(path, spec)
        except DataError as exc:
            raise DataError(f"{exc}; run `axhw data fetch {name}` to fetch it again") from None
    return paths


def _user_mnist_files(folder: Path) -> list[Path]:
    """The four standard MNIST IDX files in a user folder, raw or gzipped, under either common spelling."""
    out = []
    for spec in DATASETS["mnist"].files:
        stems = (spec.name, spec.name.replace("-idx", ".idx"))
        cands = [folder / (s + ext) for s in stems for ext in ("", ".gz")]
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            raise DataError(f"{folder} has no {spec.name} (or .gz) for MNIST")
        out.append(found)
    return out


def _mnist_files(data_dir: Path, mnist_dir: str | os.PathLike[str] | None) -> list[Path]:
    folder = mnist_dir if mnist_dir is not None else os.environ.get(MNIST_DIR_ENV) or None
    if folder is not None:
        # The user's own copy: structure is checked strictly by the IDX reader; checksums are not required,
        # so re-compressed or drop-in IDX copies work too.
        return _user_mnist_files(Path(folder).expanduser())
    return _cache_files("mnist", data_dir)


def _split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed, shuffle=True)
    return np.asarray(tr), np.asarray(te)


def stratified_subset(y: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` samples, stratified by class where every class can get one."""
    n = len(y)
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise DataError(f"limit={limit} out of range: must be >= 1")
    n_cls = len(np.unique(y))
    if limit >= n_cls and np.bincount(y).min(initial=n) >= 2:
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(n), train_size=limit, stratify=y, random_state=seed)
        return np.sort(keep)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def carve_validation(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of a seeded, stratified split of ``y`` with ``fraction`` held out.

    Stratified where every class has at least two samples (else a seeded random split), at least one sample
    on each side. The validation stream is seeded apart from the train/test split and the ``limit`` subset
    (``seed + 2``) so adding a validation split does not move the test split.

    >>> tr, va = carve_validation(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, 0)
    >>> sorted(np.bincount(np.array([0, 0, 0, 0, 1, 1, 1, 1])[va]).tolist()), len(tr)
    ([1, 1], 6)
    """
    n = len(y)
    if not 0.0 < fraction < 1.0:
        raise DataError(f"val_fraction={fraction} out of range: must be in (0, 1) (0 means no validation split)")
    n_val = min(max(1, round(fraction * n)), n - 1)
    if n < 2:
        raise DataError(f"{n} training sample(s): too few to carve a validation split from")
    idx = np.arange(n)
    n_cls = len(np.unique(y))
    if np.bincount(y).min(initial=n) >= 2 and n_cls <= n_val <= n - n_cls:
        from sklearn.model_selection import train_test_split

        tr, va = train_test_split(idx, test_size=n_val, stratify=y, random_state=seed + 2, shuffle=True)
    else:
        perm = np.random.default_rng(seed + 2).permutation(n)
        tr, va = perm[n_val:], perm[:n_val]
    return np.sort(np.asarray(tr)), np.sort(np.asarray(va))


def _standardize(x_tr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    std[std < 1e-12] = 1.0  # constant features (e.g. ionosphere V2): centre only
    return mean, std


def _raw(name: str, data_dir: Path, mnist_dir: str | os.PathLike[str] | None) -> tuple:
    """(x, y, class_names) for tabular data, or (x_tr, y_tr, x_te, y_te, class_names) for MNIST."""
    if name == "breast_cancer":
        return readers.read_breast_cancer()
    if name == "image_seg":
        return readers.read_image_seg(_cache_files(name, data_dir))
    if name == "ionosphere":
        return readers.read_ionosphere(_cache_files(name, data_dir)[0])
    if name == "satimage":
        return readers.read_satimage(_cache_files(name, data_dir)[0])
    tr_x, tr_y, te_x, te_y = _mnist_files(data_dir, mnist_dir)
    x_tr, y_tr = readers.read_mnist_pair(tr_x, tr_y)
    x_te, y_te = readers.read_mnist_pair(te_x, te_y)
    return x_tr, y_tr, x_te, y_te, tuple(str(d) for d in range(10))


def load(name: str, seed: int = 0, data_dir: str | os.PathLike[str] | None = None, test_fraction: float = 0.2,
         *, flat: bool | None = None, limit: int | None = None, test_limit: int | None = None,
         mnist_dir: str | os.PathLike[str] | None = None, val_fraction: float = 0.0) -> Dataset:
    """Load a data set offline and split, scale and convert it for training.

    Args:
        name: data set (``breast_cancer``, ``image_seg``, ``ionosphere``, ``satimage``, ``mnist``) or a
            Table 1 application name (``mnist_mlp`` = flat MNIST, ``mnist_cnn`` = ``(1, 28, 28)`` images).
        seed: seeds the stratified split and the ``limit`` subsets; same seed, same tensors.
        data_dir: cache root (default ``$AXHW_DATA`` or ``~/.cache/axhw/data``).
        test_fraction: test share of the stratified split; ignored for MNIST (fixed 60k/10k split).
        flat: MNIST only: flat 784-vectors (True) or ``(1, 28, 28)`` images (False); default from the
            application name (flat unless ``mnist_cnn``). Tabular data is always flat.
        limit: keep at most this many training samples (seeded, stratified) for quick runs.
        test_limit: keep at most this many test samples (seeded, stratified).
        mnist_dir: folder with the user's own standard MNIST IDX files (raw or ``.gz``); default
            ``$AXHW_MNIST_DIR``, else the fetched cache.
        val_fraction: share of the (``limit``-ed) training samples held out as the validation split
            (:func:`carve_validation`); 0: none.

    Raises:
        DataError: unknown name, bad arguments, or data not available offline (the message names the
            ``axhw data fetch`` command) or corrupt.
    """
    info = dataset_info(name)
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction={test_fraction} out of range: must be in (0, 1)")
    if flat is None:
        flat = APPLICATIONS[name].flat if name in APPLICATIONS else True
    root = resolve_data_dir(data_dir)
    raw = _raw(info.name, root, mnist_dir)
    if info.name == "mnist":
        x_tr, y_tr, x_te, y_te, classes = raw
        x_tr, x_te = x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1)
    else:
        x, y, classes = raw
        tr, te = _split(y, test_fraction, seed)
        x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
    keep = stratified_subset(y_tr, limit, seed)
    x_tr, y_tr = x_tr[keep], y_tr[keep]
    x_va, y_va = x_tr[:0], y_tr[:0]
    if val_fraction:
        tr, va = carve_validation(y_tr, val_fraction, seed)
        x_tr, y_tr, x_va, y_va = x_tr[tr], y_tr[tr], x_tr[va], y_tr[va]
    keep = stratified_subset(y_te, test_limit, seed + 1)
    x_te, y_te = x_te[keep], y_te[keep]
    if info.name == "mnist":
        mean, std = np.zeros(x_tr.shape[1]), np.full(x_tr.shape[1], 255.0)
    else:
        mean, std = _standardize(x_tr.astype(np.float64))
    shape = info.image_shape if (info.image_shape is not None and not flat) else (x_tr.shape[1],)

    def tensor(a: np.ndarray) -> torch.Tensor:
        # float64 for the small tabular sets; MNIST's /255 is exact enough in float32 and 8x smaller.
        wide = np.float32 if info.name == "mnist" else np.float64
        z = ((a.astype(wide) - mean.astype(wide)) / std.astype(wide)).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(z)).reshape(len(a), *shape)

    return Dataset(
        name=info.name,
        x_train=tensor(x_tr),
        y_train=torch.from_numpy(np.ascontiguousarray(y_tr, np.int64)),
        x_test=tensor(x_te),
        y_test=torch.from_numpy(np.ascontiguousarray(y_te, np.int64)),
        n_classes=info.n_classes,
        feature_shape=tuple(shape),
        mean=torch.from_numpy(mean.astype(np.float32)).reshape(shape),
        std=torch.from_numpy(std.astype(np.float32)).reshape(shape),
        class_names=classes,
        x_val=tensor(x_va),
        y_val=torch.from_numpy(np.ascontiguousarray(y_va, np.int64)),
    )


def status(data_dir: str | os.PathLike[str] | None = None) -> dict[str, bool]:
    """Which data sets :func:`load` can read offline now (cache verified, or ``$AXHW_MNIST_DIR`` complete)."""
    root = resolve_data_dir(data_dir)
    out = {}
    for name, info in DATASETS.items():
        ok = all(verified(root / name / s.name, s) for s in info.files)
        if name == "mnist" and not ok and os.environ.get(MNIST_DIR_ENV):
            try:
                _user_mnist_files(Path(os.environ[MNIST_DIR_ENV]).expanduser())
                ok = True
            except DataError:
                pass
        out[name] = ok
    return out
