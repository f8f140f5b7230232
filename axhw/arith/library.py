"""The multiplier library: approximate circuits imported from Verilog, usable wherever a multiplier is named.

``axhw multipliers import`` (:mod:`axhw.rtl.imported`) simulates a user's multiplier module over every
operand pair and stores what it found here; :func:`axhw.arith.registry.get_multiplier` then accepts the
circuit's name like a built-in one. This module only reads and writes the library (torch and numpy, no
jinja, pyverilog or simulator), so training can use imported circuits without the RTL tool chain.

Location: ``$AXHW_MULTIPLIER_LIBRARY``, else ``multipliers`` in the user cache (:func:`axhw.common.paths.cache_dir`,
``~/.cache/axhw/multipliers``). One folder per circuit name::

    <library>/<name>/circuit.json   metadata (see CircuitInfo)
    <library>/<name>/table.npy      (2**bits, 2**bits) int64: the circuit's product for every operand pair
    <library>/<name>/gates.json     circuits wider than 8 bits, instead of the table: the circuit compiled into
                                    gates (axhw.arith.gates.GateNetlist), checked against its simulation
    <library>/<name>/src/*.v        copies of the Verilog sources as imported

``table[i, j]`` is the product the circuit outputs for the operand *words* ``a = i``, ``b = j`` (port
``a`` takes the activation, port ``b`` the weight, as in the PE), read as a two's-complement value for a
signed circuit and as an unsigned value for an unsigned one; the layout of
:class:`~axhw.arith.multipliers.LUTMultiplier`.

Networks are signed. A signed circuit is used as it is. An unsigned circuit (its *core*) is used for signed
operands through the same sign-magnitude wrapper as DRUM (:func:`sign_magnitude_table`; in RTL the
generated ``rtl/sm_wrap.v.j2``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from axhw.arith.gates import GateMultiplier, GateNetlist
from axhw.arith.multipliers import K_PRESETS, LUTMultiplier

__all__ = [
    "LIBRARY_ENV",
    "NAME_RE",
    "CircuitChangedError",
    "CircuitInfo",
    "ImportedMultiplier",
    "WideImportedMultiplier",
    "check_circuit_unchanged",
    "check_new_name",
    "circuit_info",
    "circuit_of",
    "current_source_hash",
    "current_table_hash",
    "gates_hash",
    "is_wide",
    "library_dir",
    "load",
    "names",
    "reserved_name",
    "save",
    "sign_magnitude_table",
    "source_hash",
    "table_hash",
]

LIBRARY_ENV = "AXHW_MULTIPLIER_LIBRARY"
#: Circuit names: Verilog-identifier-like (they name generated wrapper modules and library folders).
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_META = "circuit.json"
_TABLE = "table.npy"
_GATES = "gates.json"
_SRC = "src"
FORMAT = "axhw.multiplier-library"
FORMAT_VERSION = 1


def library_dir() -> Path:
    """``$AXHW_MULTIPLIER_LIBRARY``, else ``multipliers`` in the user cache (:func:`axhw.common.paths.cache_dir`)."""
    from axhw.common.paths import cache_dir

    env = os.environ.get(LIBRARY_ENV)
    return Path(env).expanduser() if env else cache_dir("multipliers")


@dataclass(frozen=True)
class CircuitInfo:
    """Metadata of an imported circuit (``circuit.json``).

    Attributes:
        name: library name (what :func:`~axhw.arith.registry.get_multiplier` accepts).
        top: the Verilog top module.
        bits: operand width ``N``; ports ``a``, ``b`` have ``N`` bits and ``p`` has ``2N``.
        signed: two's-complement operands and product (else unsigned; used through the sign-magnitude wrapper).
        ports: ``{"a": ..., "b": ..., "p": ...}``: the module's port names for the activation ``a``, the
            weight ``b`` and the product ``p``.
        sources: file names of the sources under ``src/``, in compile order.
        source_hash: sha256 (hex) of the sources (names and bytes, in order; :func:`source_hash`).
        table_hash: sha256 (hex) of ``table.npy``'s int64 values (:func:`table_hash`); for a circuit wider
            than 8 bits, of its gate netlist (:func:`gates_hash`): the model that decides every number.
        simulator, simulator_version: what simulated the table.
        date: import time (ISO 8601, local).
        axhw_version: the axhw that imported it.
        stats: the error statistics measured at import (:class:`~axhw.arith.multipliers.ErrorStats` as a dict).
    """

    name: str
    top: str
    bits: int
    signed: bool
    ports: dict[str, str]
    sources: list[str]
    source_hash: str
    table_hash: str
    simulator: str
    simulator_version: str | None
    date: str
    axhw_version: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CircuitInfo:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def reserved_name(name: str) -> bool:
    """Whether ``name`` is a built-in multiplier name (``exact``, ``drum<k>``, ``K1``..``K4``; any case)."""
    key = name.strip().lower()
    return key == "exact" or bool(re.fullmatch(r"drum\d+", key)) or key.upper() in K_PRESETS


def check_new_name(name: str, force: bool = False) -> None:
    """Refuse a name that is not an identifier, clashes with a built-in, or exists (unless ``force``)."""
    if not NAME_RE.match(name):
        raise ValueError(f"circuit name {name!r} invalid: use a letter, then letters, digits or '_' (at most 64)")
    if reserved_name(name):
        raise ValueError(f"circuit name {name!r} clashes with a built-in multiplier (exact, drum<k>, K1..K4): "
                         "choose another with --name")
    if not force and name in names():
        raise ValueError(f"circuit {name!r} already exists in {library_dir()}: pass --force to replace it "
                         "or choose another --name")


def source_hash(files: Mapping[str, bytes] | list[tuple[str, bytes]]) -> str:
    """sha256 (hex) over the sources' names and bytes, in the given order."""
    items = list(files.items()) if isinstance(files, Mapping) else list(files)
    h = hashlib.sha256()
    for name, data in items:
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def table_hash(table: torch.Tensor | np.ndarray) -> str:
    """sha256 (hex) of the table's values as little-endian int64 in row-major order."""
    arr = np.ascontiguousarray(np.asarray(table), dtype="<i8")
    return hashlib.sha256(arr.tobytes()).hexdigest()


def gates_hash(netlist: GateNetlist) -> str:
    """sha256 (hex) of a gate netlist's canonical JSON (the model of a circuit wider than 8 bits)."""
    text = json.dumps(netlist.as_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def sign_magnitude_table(core: torch.Tensor, bits: int) -> torch.Tensor:
    """The signed ``(2**bits, 2**bits)`` table of an unsigned core used through the sign-magnitude wrapper,
    the same semantics as DRUM's (``rtl/drum_mul.v.j2``) and the generated ``rtl/sm_wrap.v.j2``:

    * magnitudes ``|a|``, ``|b|`` go to the unsigned ``bits``-bit core (``|-2**(bits-1)| = 2**(bits-1)``
      fits ``bits`` unsigned bits, so nothing overflows);
    * the sign is ``sign(a) XOR sign(b)``; a zero core product stays 0;
    * the signed result saturates to the ``2*bits``-bit word: magnitudes above ``2**(2*bits-1) - 1`` give
      ``2**(2*bits-1) - 1`` when positive, magnitudes above ``2**(2*bits-1)`` give ``-2**(2*bits-1)`` when
      negative.

    ``core`` is indexed by unsigned operand values; the result by two's-complement operand words.
    """
    side = 1 << bits
    core = torch.as_tensor(core).to(torch.int64)
    if tuple(core.shape) != (side, side):
        raise ValueError(f"core table shape {tuple(core.shape)} invalid: expected ({side}, {side})")
    words = torch.arange(side, dtype=torch.int64)
    vals = torch.where(words >= side // 2, words - side, words)
    mag = vals.abs()
    prod = core[mag[:, None], mag[None, :]]
    neg = (vals[:, None] < 0) ^ (vals[None, :] < 0)
    res = torch.where(neg, -prod, prod)
    return res.clamp(-(1 << (2 * bits - 1)), (1 << (2 * bits - 1)) - 1)


class ImportedMultiplier(LUTMultiplier):
    """A library circuit as a :class:`~axhw.arith.multipliers.LUTMultiplier`, carrying its :class:`CircuitInfo`.

    ``signed=True`` on an unsigned circuit gives the sign-magnitude-wrapped model
    (:func:`sign_magnitude_table`); ``core_table`` is always the circuit's own table.
    """

    def __init__(self, core_table: torch.Tensor, info: CircuitInfo, signed: bool = True) -> None:
        if signed and not info.signed:
            table = sign_magnitude_table(core_table, info.bits)
        elif signed == info.signed:
            table = core_table
        else:
            raise ValueError(f"circuit {info.name!r} is signed: it has no unsigned use")
        super().__init__(table, info.bits, signed, name=info.name)
        self.circuit = info
        self.core_table = torch.as_tensor(core_table).to(torch.int64)

    @property
    def wrapped(self) -> bool:
        """Whether products go through the sign-magnitude wrapper (unsigned core, signed use)."""
        return self.signed and not self.circuit.signed

    def spec(self) -> dict[str, object]:
        return {**super().spec(), "circuit": self.circuit.name, "source_hash": self.circuit.source_hash,
                "table_hash": self.circuit.table_hash, "core_signed": self.circuit.signed}

    def __repr__(self) -> str:
        use = " (sign-magnitude wrapped)" if self.wrapped else ""
        return f"ImportedMultiplier(name={self.name!r}, bits={self.bits}, signed={self.signed}{use})"


class WideImportedMultiplier(GateMultiplier):
    """A library circuit wider than 8 bits: its gates (:class:`~axhw.arith.gates.GateMultiplier`, bit-sliced),
    carrying its :class:`CircuitInfo`. ``signed=True`` on an unsigned circuit uses the sign-magnitude wrapper."""

    def __init__(self, netlist: GateNetlist, info: CircuitInfo, signed: bool = True) -> None:
        super().__init__(netlist, signed=signed, core_signed=info.signed, name=info.name)
        self.circuit = info

    def spec(self) -> dict[str, object]:
        return {**super().spec(), "circuit": self.circuit.name, "source_hash": self.circuit.source_hash,
                "table_hash": self.circuit.table_hash, "core_signed": self.circuit.signed}

    def __repr__(self) -> str:
        use = " (sign-magnitude wrapped)" if self.wrapped else ""
        return f"WideImportedMultiplier(name={self.name!r}, bits={self.bits}, signed={self.signed}{use})"


def names() -> list[str]:
    """Names of the circuits in the library (sorted; an absent library is empty)."""
    root = library_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / _META).is_file() and NAME_RE.match(p.name))


def _folder(name: str) -> Path:
    folder = library_dir() / name
    if not NAME_RE.match(name) or not (folder / _META).is_file():
        have = names()
        raise ValueError(f"no imported circuit {name!r} in {library_dir()}: "
                         f"{'imported ones are ' + ', '.join(have) if have else 'the library is empty'} "
                         "(axhw multipliers import FILE.v --top MODULE --bits N)")
    return folder


def circuit_info(name: str) -> CircuitInfo:
    """The metadata of circuit ``name`` (``ValueError`` naming the library when it is not there)."""
    folder = _folder(name)
    try:
        return CircuitInfo.from_dict(json.loads((folder / _META).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"library entry {folder} is unreadable ({exc}): re-import the circuit with --force") from exc


def _read_table(name: str, info: CircuitInfo) -> torch.Tensor:
    path = _folder(name) / _TABLE
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"table {path} is unreadable ({exc}): re-import the circuit with --force") from exc
    side = 1 << info.bits
    if arr.shape != (side, side) or arr.dtype.kind not in "iu":
        raise ValueError(f"table {path} has shape {arr.shape} / dtype {arr.dtype}, expected ({side}, {side}) int64")
    return torch.from_numpy(arr.astype(np.int64))


def current_source_hash(name: str) -> str:
    """sha256 of the sources as they are stored now (differs from the metadata when someone edited them)."""
    info = circuit_info(name)
    src = _folder(name) / _SRC
    files = []
    for fname in info.sources:
        try:
            files.append((fname, (src / fname).read_bytes()))
        except OSError:
            files.append((fname, b"<missing>"))
    return source_hash(files)


def _read_gates(name: str) -> GateNetlist:
    path = _folder(name) / _GATES
    try:
        return GateNetlist.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"gate netlist {path} is unreadable ({exc}): re-import the circuit with --force") from exc


def is_wide(name: str) -> bool:
    """Whether circuit ``name`` is stored as gates (wider than 8 bits) rather than as a table."""
    return (_folder(name) / _GATES).is_file()


def current_table_hash(name: str) -> str:
    """sha256 of the model as stored now: the table, or the gate netlist of a wide circuit."""
    if is_wide(name):
        return gates_hash(_read_gates(name))
    return table_hash(_read_table(name, circuit_info(name)))


def source_files(name: str) -> list[Path]:
    """The stored sources of circuit ``name``, in compile order."""
    src = _folder(name) / _SRC
    return [src / f for f in circuit_info(name).sources]


def load(name: str, bits: int | None = None, signed: bool = True) -> ImportedMultiplier | WideImportedMultiplier:
    """Circuit ``name`` as a multiplier model; ``bits`` (when given) must be the circuit's width.

    The model's :attr:`CircuitInfo.table_hash` is the hash of the table as loaded (so a table edited after
    import never matches the verification records of the imported one).
    """
    folder = _folder(name)
    model_file = _GATES if (folder / _GATES).is_file() else _TABLE
    try:
        stamp = tuple((folder / f).stat().st_mtime_ns for f in (_META, model_file))
    except OSError:
        stamp = None
    key = (str(folder), stamp, bits, signed)
    if stamp is not None and key in _LOADED:
        return _LOADED[key]
    info = circuit_info(name)
    if bits is not None and bits != info.bits:
        raise ValueError(f"circuit {name!r} is a {info.bits}-bit multiplier, got bits={bits}: "
                         f"use bits={info.bits} (--bits {info.bits})")
    if not signed and info.signed:
        raise ValueError(f"circuit {name!r} is signed: unsigned operands need an unsigned circuit")
    model: ImportedMultiplier | WideImportedMultiplier
    if model_file == _GATES:
        netlist = _read_gates(name)
        if netlist.bits != info.bits:
            raise ValueError(f"gate netlist of {name!r} is {netlist.bits}-bit, its metadata says {info.bits}: "
                             "re-import the circuit with --force")
        actual = gates_hash(netlist)
        if actual != info.table_hash:
            info = replace(info, table_hash=actual)
        model = WideImportedMultiplier(netlist, info, signed)
    else:
        table = _read_table(name, info)
        actual = table_hash(table)
        if actual != info.table_hash:
            info = replace(info, table_hash=actual)
        model = ImportedMultiplier(table, info, signed)
    if stamp is not None:
        if len(_LOADED) > 32:
            _LOADED.clear()
        _LOADED[key] = model
    return model


#: Loaded circuits by (folder, file mtimes, bits, signed): HardwareConfig asks for its multiplier often.
_LOADED: dict[tuple[Any, ...], ImportedMultiplier | WideImportedMultiplier] = {}


def circuit_of(multiplier: object) -> dict[str, Any] | None:
    """What a checkpoint or metrics file records about the circuit a multiplier comes from: name, top,
    bits, signedness, sources and table hashes, and whether the sign-magnitude wrapper is in use (``None``
    for built-in models)."""
    info = getattr(multiplier, "circuit", None)
    if not isinstance(info, CircuitInfo):
        return None
    return {"name": info.name, "top": info.top, "bits": info.bits, "signed": info.signed,
            "source_hash": info.source_hash, "table_hash": info.table_hash,
            "sign_magnitude_wrapper": bool(getattr(multiplier, "wrapped", False))}


class CircuitChangedError(ValueError):
    """A network trained for an imported circuit meets a different circuit under the same name."""


def check_circuit_unchanged(trained_for: Mapping[str, Any] | None, multiplier: object, what: str) -> None:
    """Refuse to run a network on a circuit that replaced the one it was trained for under the same name.

    Why: ``axhw multipliers import --force`` may put different Verilog under a name that checkpoints already
    record (:func:`circuit_of`, stored at training time). Evaluating such a checkpoint by that name would
    silently use the new table and still call the result hardware-verified. The product table decides every
    number, so the table hashes are compared (new sources that simulate to the same table are the same
    circuit). Another name, or a built-in multiplier, is a deliberate choice and passes.

    Raises:
        CircuitChangedError: same name, different table; the message says how to proceed.
    """
    now = circuit_of(multiplier)
    if not trained_for or now is None or trained_for.get("name") != now["name"]:
        return
    if trained_for.get("table_hash") != now["table_hash"]:
        name = now["name"]
        raise CircuitChangedError(
            f"{what} was trained for circuit {name} with product table {str(trained_for.get('table_hash'))[:12]}, but "
            f"the library's {name} is now a different circuit (table {now['table_hash'][:12]}, replaced with "
            f"`multipliers import --force`): re-import the old Verilog under another name and evaluate with that, "
            f"retrain for the new {name}, or pass --allow-circuit-change to evaluate on the new table anyway")


def save(info: CircuitInfo, table: torch.Tensor | GateNetlist, sources: list[tuple[str, bytes]],
         force: bool = False) -> Path:
    """Write circuit ``info.name`` into the library atomically: everything goes into a temporary folder in
    the library, which is then renamed into place (with ``force``, the old folder is moved aside first and
    removed after). Readers see the old entry or the whole new one. ``table`` is the product table, or the
    gate netlist of a circuit wider than 8 bits."""
    from axhw.common.io import locked

    check_new_name(info.name, force)
    root = library_dir()
    root.mkdir(parents=True, exist_ok=True)
    dest = root / info.name
    with locked(root / ".lock"):
        check_new_name(info.name, force)  # again, under the lock
        tmp = Path(tempfile.mkdtemp(prefix=f".{info.name}.", dir=root))
        try:
            (tmp / _SRC).mkdir()
            for fname, data in sources:
                (tmp / _SRC / fname).write_bytes(data)
            if isinstance(table, GateNetlist):
                (tmp / _GATES).write_text(json.dumps(table.as_dict(), separators=(",", ":")) + "\n")
            else:
                with open(tmp / _TABLE, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(torch.as_tensor(table).to(torch.int64).numpy()),
                            allow_pickle=False)
            (tmp / _META).write_text(json.dumps(info.as_dict(), indent=1) + "\n")
            old = None
            if dest.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{info.name}.old.", dir=root))
                os.replace(dest, old / "entry")
            try:
                os.replace(tmp, dest)
            except OSError:
                if old is not None:
                    os.replace(old / "entry", dest)
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
            raise
    return dest
