"""Hardware-verified noise models: a small JSON registry of passing RTL verifications, and :func:`coverage`.

Why: a trained network's accuracy under "DRUM-3" only means something for hardware if the Python model that
produced it is the one the RTL was checked against. Every passing multiplier check
(:func:`axhw.rtl.verify.check`) records its configuration, a hash of the Python model code
(``inspect.getsource`` of :mod:`axhw.multipliers`), a hash of the generated RTL, the simulator and its
version, the vectors and the result. :func:`coverage` then answers whether the multiplier in use is covered by
a passing record *for the current code*; a changed model or template invalidates old records.

The registry lives at ``$AXHW_RTL_REGISTRY`` or ``build/rtl-verify/registry.json`` in the repository.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any

from axhw.io import atomic_write_json
from axhw.multipliers import DRUM, Exact, get_multiplier
from axhw.rtl.generate import MultiplierConfig, generate

__all__ = ["coverage", "model_hash", "record", "records", "registry_path", "rtl_hash"]


def registry_path() -> Path:
    """``$AXHW_RTL_REGISTRY`` or ``build/rtl-verify/registry.json`` at the repository root."""
    env = os.environ.get("AXHW_RTL_REGISTRY")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "build" / "rtl-verify" / "registry.json"


def model_hash() -> str:
    """SHA-256 (16 hex digits) of the multiplier model source: the whole module, since DRUM's behaviour
    lives in :class:`~axhw.multipliers.SeparableMultiplier` and helpers as much as in :class:`DRUM`."""
    import axhw.multipliers as mod

    return hashlib.sha256(inspect.getsource(mod).encode()).hexdigest()[:16]


def rtl_hash(cfg: MultiplierConfig) -> str:
    """SHA-256 (16 hex digits) of the RTL generated now for ``cfg`` (file names and texts)."""
    h = hashlib.sha256()
    for name, text in sorted(generate(cfg).items()):
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()[:16]


def records(path: Path | None = None) -> list[dict[str, Any]]:
    """All records (an unreadable registry reads as empty: it is a cache of evidence, not the evidence)."""
    path = path or registry_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return list(data.get("records", [])) if isinstance(data, dict) else []


def record(cfg: MultiplierConfig, simulator: str, simulator_version: str | None, vectors: int, ok: bool,
           mismatches: int, seconds: float = 0.0, path: Path | None = None) -> dict[str, Any]:
    """Add (or replace: one per configuration, simulator and code version) a verification record."""
    from axhw.rtl.verify import _locked

    path = path or registry_path()
    entry = {
        "config_id": cfg.config_id,
        "design": cfg.design,
        "bits": cfg.bits,
        "k": cfg.k,
        "signed": cfg.signed,
        "model_hash": model_hash(),
        "rtl_hash": rtl_hash(cfg),
        "simulator": simulator,
        "simulator_version": simulator_version,
        "vectors": vectors,
        "exhaustive": vectors >= 4**cfg.bits,
        "mismatches": mismatches,
        "ok": ok,
        "seconds": round(seconds, 3),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ("config_id", "simulator", "model_hash", "rtl_hash")
    with _locked(path.with_suffix(".lock")):
        kept = [r for r in records(path) if any(r.get(k) != entry[k] for k in key)]
        atomic_write_json({"records": [*kept, entry]}, path, indent=1)
    return entry


def _config_for(name: str, bits: int, signed: bool) -> MultiplierConfig | None:
    model = get_multiplier(name, bits, signed)
    if isinstance(model, DRUM):
        return MultiplierConfig("drum", bits, model.k, signed)
    if isinstance(model, Exact):
        return MultiplierConfig("exact", bits, None, signed)
    return None


def coverage(multiplier_name: str, bits: int = 8, signed: bool = True, path: Path | None = None) -> tuple[bool, str]:
    """Whether the multiplier model in use is covered by a passing RTL verification of the current code.

    For ``bits <= 8`` a record must be exhaustive (all ``4**bits`` pairs); wider ones need a random+corner run.

    Returns:
        ``(covered, message)``; the message says which simulators passed, or how to produce a record.

    >>> coverage("K3", 8)  # doctest: +SKIP
    (True, 'drum3 (drum_k3_s8) is hardware-verified: RTL matches the model bit for bit on icarus, verilator ...')
    """
    cfg = _config_for(multiplier_name, bits, signed)
    if cfg is None:
        return False, f"{multiplier_name}: no RTL generator for this multiplier; it is a software-only model"
    k = f" --k {cfg.k}" if cfg.k is not None else ""
    how = (f"run `make rtl-verify` or `axhw rtl verify --design {cfg.design} --bits {bits}{k}"
           f"{'' if signed else ' --unsigned'}`")
    recs = [r for r in records(path) if r.get("config_id") == cfg.config_id and r.get("ok")]
    if not recs:
        return False, f"{multiplier_name} ({cfg.config_id}) has no passing RTL verification on record: {how}"
    mh, rh = model_hash(), rtl_hash(cfg)
    current = [r for r in recs if r.get("model_hash") == mh and r.get("rtl_hash") == rh]
    if bits <= 8:
        current = [r for r in current if r.get("exhaustive")]
    if not current:
        return False, (f"{multiplier_name} ({cfg.config_id}) was verified, but the model or RTL code changed since "
                       f"(or the run was not exhaustive): {how}")
    sims = sorted({f"{r['simulator']} ({r.get('simulator_version') or '?'})" for r in current})
    scope = "exhaustively" if all(r.get("exhaustive") for r in current) else "on random + corner pairs"
    return True, (f"{multiplier_name} ({cfg.config_id}) is hardware-verified: RTL matches the model bit for bit "
                  f"{scope} on {', '.join(sims)}")
