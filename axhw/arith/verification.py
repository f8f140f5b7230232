"""Hardware-verified noise models: the registry of passing RTL verifications, and :func:`coverage`.

Why: a trained network's accuracy under "DRUM-3" (or under an imported circuit) only means something for
hardware if the Python model that produced it is the one the RTL was checked against. The RTL code
(:mod:`axhw.rtl.registry`, :mod:`axhw.rtl.imported`) records every passing check here; training and
evaluation ask :func:`coverage`. This module sits *below* training: it imports neither jinja nor pyverilog
nor anything from :mod:`axhw.rtl`, and never renders a template (it hashes the template files instead).

Two kinds of records live in one JSON file (``$AXHW_RTL_REGISTRY``, else ``rtl-verify/registry.json`` in
the user cache, :func:`axhw.common.paths.cache_dir`):

* generated designs (``exact``, ``drum``): keyed by configuration, simulator, :func:`model_hash` (the Python
  model code) and :func:`rtl_inputs_hash` (the templates and the generator code that render the RTL);
* imported circuits (``kind: "imported"``): keyed by circuit name, the sha256 of its Verilog sources, the
  sha256 of its product table, the variant (``raw``: the user's module against its table; ``signed``: the
  generated sign-magnitude wrapper around an unsigned core against the signed model), the wrapper template's
  hash, the check (``import`` simulation or ``cocotb``) and the simulator. Editing a stored source, the table
  or the wrapper template invalidates the records.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

from axhw.common.io import atomic_write_json, locked
from axhw.common.paths import cache_dir, resource_dir

__all__ = [
    "SM_WRAP_TEMPLATE",
    "CorruptRegistryWarning",
    "add_record",
    "coverage",
    "imported_coverage",
    "model_hash",
    "record_imported",
    "records",
    "registry_path",
    "rtl_inputs_hash",
    "wrapper_hash",
]

#: Template of the sign-magnitude wrapper an unsigned imported core is used through (``rtl/``).
SM_WRAP_TEMPLATE = "sm_wrap.v.j2"
#: Template of the plain port adapter (user port names to ``a``, ``b``, ``p``) (``rtl/``).
PORT_ADAPTER_TEMPLATE = "port_adapter.v.j2"


def registry_path() -> Path:
    """``$AXHW_RTL_REGISTRY``, else ``rtl-verify/registry.json`` in the user cache (:func:`axhw.common.paths.cache_dir`)."""
    env = os.environ.get("AXHW_RTL_REGISTRY")
    return Path(env).expanduser() if env else cache_dir("rtl-verify", "registry.json")


def model_hash() -> str:
    """SHA-256 (16 hex digits) of the multiplier model source: the whole module, since DRUM's behaviour
    lives in :class:`~axhw.arith.multipliers.SeparableMultiplier` and helpers as much as in :class:`DRUM`."""
    import axhw.arith.multipliers as mod

    return hashlib.sha256(inspect.getsource(mod).encode()).hexdigest()[:16]


def _generator_source() -> bytes:
    # The generator's code, found without importing axhw.rtl (which pulls in jinja2 and pyverilog).
    spec = importlib.util.find_spec("axhw")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "rtl" / "generate.py"
        if path.is_file():
            return path.read_bytes()
    return b""


def rtl_inputs_hash() -> str:
    """SHA-256 (16 hex digits) of everything that renders generated RTL: every template in ``rtl/`` and the
    generator's code. Cheaper than rendering and conservative: any template edit invalidates every record."""
    h = hashlib.sha256()
    for path in sorted(resource_dir("rtl").glob("*.j2")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(_generator_source())
    return h.hexdigest()[:16]


def wrapper_hash() -> str:
    """SHA-256 (16 hex digits) of the templates an imported circuit is simulated through (sign-magnitude
    wrapper and port adapter) and of the sign-magnitude Python model (:mod:`axhw.arith.library`)."""
    import axhw.arith.library as lib

    h = hashlib.sha256()
    for name in (SM_WRAP_TEMPLATE, PORT_ADAPTER_TEMPLATE):
        path = resource_dir("rtl") / name
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    h.update(inspect.getsource(lib.sign_magnitude_table).encode())
    return h.hexdigest()[:16]


class CorruptRegistryWarning(UserWarning):
    """The verification registry could not be read; its records count as absent."""


def _read(path: Path) -> list[dict[str, Any]] | None:
    """The records in ``path``: [] when there is none, None when the file is there but unreadable."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("records", []), list):
        return None
    return list(data.get("records", []))


def records(path: Path | None = None) -> list[dict[str, Any]]:
    """All records. An unreadable registry reads as empty, with a :class:`CorruptRegistryWarning` naming it:
    it is a cache of evidence (rerunning the checks rebuilds it), not the evidence, but nobody should lose
    it without being told."""
    path = path or registry_path()
    found = _read(path)
    if found is None:
        warnings.warn(f"RTL verification registry {path} is unreadable (not axhw's JSON): its records count as "
                      "absent; the next check keeps it as registry.json.corrupt and starts a new one",
                      CorruptRegistryWarning, stacklevel=2)
        return []
    return found


def add_record(entry: dict[str, Any], key: tuple[str, ...], path: Path | None = None) -> dict[str, Any]:
    """Add ``entry``, replacing any record that agrees with it on every field in ``key`` (under a lock).

    An unreadable registry is moved aside to ``<name>.corrupt`` (never silently overwritten) before the
    new one is written."""
    path = path or registry_path()
    entry = {**entry, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with locked(path.with_suffix(".lock")):
        found = _read(path)
        if found is None:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            warnings.warn(f"RTL verification registry {path} was unreadable: kept as {aside}, a new one started",
                          CorruptRegistryWarning, stacklevel=2)
            found = []
        kept = [r for r in found if any(r.get(k) != entry.get(k) for k in key)]
        atomic_write_json({"records": [*kept, entry]}, path, indent=1)
    return entry


_IMPORTED_KEY = ("kind", "name", "source_hash", "table_hash", "variant", "wrapper_hash", "check", "simulator")


def record_imported(name: str, source_hash: str, table_hash: str, variant: str, check: str, simulator: str,
                    simulator_version: str | None, vectors: int, mismatches: int, seconds: float = 0.0,
                    path: Path | None = None, exhaustive: bool = True) -> dict[str, Any]:
    """Record a passing check of an imported circuit (``variant`` ``raw``/``signed``, ``check``
    ``import``/``cocotb``; exhaustive, or on ``vectors`` corner and random pairs for a circuit wider than 8
    bits); failing checks are not evidence and are not recorded."""
    entry = {
        "kind": "imported",
        "name": name,
        "source_hash": source_hash,
        "table_hash": table_hash,
        "variant": variant,
        "wrapper_hash": wrapper_hash(),
        "check": check,
        "simulator": simulator,
        "simulator_version": simulator_version,
        "vectors": vectors,
        "exhaustive": exhaustive,
        "mismatches": mismatches,
        "ok": mismatches == 0,
        "seconds": round(seconds, 3),
    }
    return add_record(entry, _IMPORTED_KEY, path)


def imported_coverage(name: str, path: Path | None = None) -> tuple[bool, str]:
    """Coverage of the imported circuit ``name`` (see :func:`coverage`)."""
    from axhw.arith.library import circuit_info, current_source_hash, current_table_hash

    info = circuit_info(name)
    table = current_table_hash(name)
    how = f"run `axhw rtl verify --multiplier {name}` (or re-import it with `axhw multipliers import ... --force`)"
    now = current_source_hash(name)
    if now != info.source_hash:
        return False, (f"{name}: its stored Verilog changed since import (sha256 {now[:16]} != {info.source_hash[:16]}); "
                       f"the table no longer describes it: re-import it")
    if table != info.table_hash:
        return False, (f"{name}: its stored {'gates' if info.bits > 8 else 'table'} changed since import (sha256 {table[:16]} != {info.table_hash[:16]}); "
                       f"run `axhw rtl verify --multiplier {name}` to see where it disagrees with the circuit, then re-import it")
    wh = wrapper_hash()
    recs = [r for r in records(path) if r.get("kind") == "imported" and r.get("name") == name and r.get("ok")
            and r.get("source_hash") == info.source_hash and r.get("table_hash") == info.table_hash
            and r.get("wrapper_hash") == wh]
    needed = ("raw",) if info.signed else ("raw", "signed")
    # Evidence per simulator: every needed variant passed on it (by the import simulation or by cocotb).
    sims: dict[str, set[str]] = {}
    for r in recs:
        label = f"{r['simulator']} ({r.get('simulator_version') or '?'})"
        sims.setdefault(label, set()).add(r["variant"])
        sims.setdefault(f"{label}|{r['check']}", set()).add(r["variant"])
    full = sorted(s for s, v in sims.items() if "|" not in s and set(needed) <= v)
    if not full:
        return False, f"{name} (sources sha256 {info.source_hash[:16]}) has no passing RTL verification on record: {how}"
    cocotb = sorted(s.split(" (")[0] for s, v in sims.items() if s.endswith("|cocotb") and set(needed) <= v)
    what = "its RTL" if info.signed else "its RTL and the generated sign-magnitude wrapper"
    detail = f"cocotb re-verified on {', '.join(cocotb)}" if cocotb else f"not yet re-verified through cocotb ({how})"
    if info.bits > 8:
        pairs = max(int(r.get("vectors", 0)) for r in recs)
        return True, (f"{name} (sources sha256 {info.source_hash[:16]}) is hardware-verified: {what} simulated on "
                      f"{pairs} corner and random pairs, bit for bit equal to its compiled gates, on {', '.join(full)}; "
                      f"{detail}")
    return True, (f"{name} (sources sha256 {info.source_hash[:16]}) is hardware-verified: {what} simulated "
                  f"exhaustively, bit for bit equal to the table, on {', '.join(full)}; {detail}")


def _builtin_config(model: Any) -> tuple[str, int | None] | None:
    from axhw.arith.multipliers import DRUM, Exact

    if isinstance(model, DRUM):
        return "drum", model.k
    if isinstance(model, Exact):
        return "exact", None
    return None


def coverage(multiplier: Any, bits: int = 8, signed: bool = True, path: Path | None = None) -> tuple[bool, str]:
    """Whether the multiplier in use is covered by a passing RTL verification of the current code.

    ``multiplier`` is a name (``exact``, ``drum<k>``, ``K1``..``K4``, an imported circuit) or a
    :class:`~axhw.arith.multipliers.Multiplier`. Generated designs with ``bits <= 8`` need an exhaustive record
    (all ``4**bits`` pairs); wider ones need a random+corner run. Imported circuits need exhaustive records
    for the current sources, table and wrapper (see :func:`imported_coverage`).

    Returns:
        ``(covered, message)``; the message says which simulators passed, or how to produce a record.
    """
    from axhw.arith.multipliers import Multiplier
    from axhw.arith.registry import get_multiplier

    model = multiplier if isinstance(multiplier, Multiplier) else get_multiplier(multiplier, bits, signed)
    label = model.name if isinstance(multiplier, Multiplier) else multiplier
    circuit = getattr(model, "circuit", None)
    if circuit is not None:
        return imported_coverage(circuit.name, path)
    design = _builtin_config(model)
    if design is None:
        return False, f"{label}: no RTL for this multiplier; it is a software-only model"
    kind, k = design
    config_id = f"{kind}{f'_k{k}' if k is not None else ''}_{'s' if model.signed else 'u'}{model.bits}"
    how = (f"run `axhw rtl verify --multiplier {'exact' if k is None else f'drum{k}'} --bits {model.bits}"
           f"{'' if model.signed else ' --unsigned'} --sim icarus` (works from an installed wheel)")
    recs = [r for r in records(path) if r.get("config_id") == config_id and r.get("ok")]
    if not recs:
        return False, f"{label} ({config_id}) has no passing RTL verification on record: {how}"
    mh, rh = model_hash(), rtl_inputs_hash()
    current = [r for r in recs if r.get("model_hash") == mh and r.get("rtl_inputs_hash") == rh]
    if model.bits <= 8:
        current = [r for r in current if r.get("exhaustive")]
    if not current:
        return False, (f"{label} ({config_id}) was verified, but the model or RTL code changed since "
                       f"(or the run was not exhaustive): {how}")
    sims = sorted({f"{r['simulator']} ({r.get('simulator_version') or '?'})" for r in current})
    scope = "exhaustively" if all(r.get("exhaustive") for r in current) else "on random + corner pairs"
    return True, (f"{label} ({config_id}) is hardware-verified: RTL matches the model bit for bit "
                  f"{scope} on {', '.join(sims)}")
