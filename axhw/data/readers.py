"""Parsers for the on-disk formats: IDX (MNIST), ARFF (WEKA) and R ``.rda`` (mlbench).

Each reader returns raw ``float64`` features, ``int64`` labels ``0..n_classes-1`` and the class names, and
raises :class:`~axhw.data.registry.DataError` on anything malformed, so a corrupt cache gives one clear line
instead of a numpy traceback deep inside training.
"""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from axhw.data.registry import DataError

__all__ = [
    "IDX_DTYPES",
    "read_breast_cancer",
    "read_idx",
    "read_image_seg",
    "read_ionosphere",
    "read_mnist_pair",
    "read_satimage",
]

Arrays = tuple[np.ndarray, np.ndarray, tuple[str, ...]]

#: IDX type codes (LeCun's format description, http://yann.lecun.com/exdb/mnist/): big-endian payload.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_maybe_gzip(path: Path) -> bytes:
    """File content, decompressed when it starts with the gzip magic (whatever its suffix)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is a corrupt gzip file: {exc}") from None
    return raw


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (raw or gzip-compressed) into a native-endian array.

    Why strict: the header says exactly how many bytes follow; any mismatch means a truncated download or
    a different file, and silently reshaping would train on garbage.

    Raises:
        DataError: bad magic (first two bytes not zero, unknown type code, zero dimensions) or a size that
            does not match the header.
    """
    buf = _read_maybe_gzip(Path(path))
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in IDX_DTYPES or buf[3] == 0:
        raise DataError(f"{path} is not an IDX file (bad magic {buf[:4].hex() or 'empty'})")
    dtype, ndim = IDX_DTYPES[buf[2]], buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{path}: IDX header truncated ({len(buf)} bytes, {ndim} dimensions declared)")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        raise DataError(f"{path}: IDX size {len(buf)} bytes does not match its header {dims} ({expected} bytes)")
    return np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_mnist_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 from two IDX files, cross-checked."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
        raise DataError(f"{images}: expected uint8 images of shape (N, 28, 28), got {x.dtype} {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{labels}: expected {x.shape[0]} labels to match {images.name}, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{labels}: labels outside 0..9")
    return x, y.astype(np.int64)


def read_breast_cancer() -> Arrays:
    """WDBC from scikit-learn (569 x 30; 0 = malignant, 1 = benign, scikit-learn's coding)."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return np.asarray(d.data, np.float64), np.asarray(d.target, np.int64), tuple(str(n) for n in d.target_names)


def read_image_seg(files: list[Path]) -> Arrays:
    """UCI image segmentation from WEKA's ARFF files, concatenated (challenge 1500 + test 810 = 2310 x 19).

    Labels follow the ARFF's declared class order (brickface, sky, foliage, cement, window, path, grass).
    """
    from scipy.io import arff

    xs, ys, names = [], [], None
    for f in files:
        try:
            text = _read_maybe_gzip(f).decode("utf-8")
            data, meta = arff.loadarff(io.StringIO(text))
        except Exception as exc:  # scipy raises ValueError, ArffError, even StopIteration on bad input
            raise DataError(f"{f} is not a readable ARFF file: {exc}") from None
        if "class" not in meta.names():
            raise DataError(f"{f}: ARFF has no 'class' attribute")
        kind, values = meta["class"]  # (type, range): the range of a nominal attribute lists its values
        if values is None:
            raise DataError(f"{f}: ARFF 'class' attribute is {kind}, not nominal")
        cls = tuple(values)
        if names is not None and cls != names:
            raise DataError(f"{f}: class list {cls} differs from {names}")
        names = cls
        feats = [n for n in meta.names() if n != "class"]
        xs.append(np.column_stack([np.asarray(data[n], np.float64) for n in feats]))
        index = {c.encode(): i for i, c in enumerate(cls)}
        ys.append(np.array([index[v] for v in data["class"]], np.int64))
    return np.concatenate(xs), np.concatenate(ys), tuple(names or ())


def _read_rda_frame(path: Path, key: str) -> Any:
    try:
        import rdata
    except ImportError:
        raise DataError("reading mlbench .rda files needs the Python package 'rdata' (pip install rdata)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Unknown encoding. Assumed ASCII.": the files are ASCII
            frames = rdata.read_rda(path)
    except Exception as exc:  # rdata raises a variety of parser errors on corrupt input
        raise DataError(f"{path} is not a readable R data file: {exc}") from None
    if key not in frames:
        raise DataError(f"{path} has no object {key!r} (found {', '.join(frames)})")
    return frames[key]


def read_ionosphere(path: Path) -> Arrays:
    """Ionosphere (351 x 34) from mlbench; V1/V2 are stored as R factors of '0'/'1' and become numbers.

    Labels follow the factor's levels: 0 = bad, 1 = good.
    """
    df = _read_rda_frame(path, "Ionosphere")
    feats = [c for c in df.columns if c != "Class"]
    x = np.column_stack([np.asarray(df[c].astype(str).astype(float), np.float64) for c in feats])
    return x, np.asarray(df["Class"].cat.codes, np.int64), tuple(str(c) for c in df["Class"].cat.categories)


#: mlbench's six Satellite levels in order -> the UCI class codes 1,2,3,4,5,7 minus one (code 6, "mixture",
#: has no samples). Keeping the UCI codes gives the paper's 7 outputs with output 5 never a target.
SATIMAGE_UCI_INDEX = (0, 1, 2, 3, 4, 6)
SATIMAGE_CLASSES = ("red soil", "cotton crop", "grey soil", "damp grey soil", "vegetation stubble",
                    "mixture (empty)", "very damp grey soil")


def read_satimage(path: Path) -> Arrays:
    """Statlog Landsat satellite (6435 x 36) from mlbench, labels in UCI coding 0..6 with class 5 empty.

    Why: the paper's network has 7 outputs (Table 1: 36-64-64-7), matching UCI's 7 class codes of which
    one ("mixture") never occurs; keeping that coding lets the data and model agree without renumbering.
    """
    df = _read_rda_frame(path, "Satellite")
    levels = tuple(str(c) for c in df["classes"].cat.categories)
    expected = tuple(c for i, c in enumerate(SATIMAGE_CLASSES) if i != 5)
    if levels != expected:
        raise DataError(f"{path}: unexpected Satellite classes {levels}")
    codes = np.asarray(df["classes"].cat.codes, np.int64)
    x = np.column_stack([np.asarray(df[c], np.float64) for c in df.columns if c != "classes"])
    return x, np.asarray(SATIMAGE_UCI_INDEX, np.int64)[codes], SATIMAGE_CLASSES
