"""Hardware-verified noise models: a small JSON registry of passing RTL verifications, and :func:`coverage`.

Why: a trained network's accuracy under "DRUM-3" only means something for hardware if the Python model that
produced it is the one the RTL was checked against. Every passing multiplier check
(:func:`axhw.rtl.verify.check`) records its configuration, a hash of the Python model code
(``inspect.getsource`` of :mod:`axhw.arith.multipliers`), a hash of the generated RTL, the simulator and its
version, the vectors and the result. :func:`coverage` then answers whether the multiplier in use is covered by
a passing record *for the current code*; a changed model or template invalidates old records.

The registry itself (file, records, :func:`coverage`) lives in :mod:`axhw.arith.verification`, below training, so
that asking for coverage imports no jinja or pyverilog; this module adds what needs the generator
(:func:`rtl_hash`, :func:`record`) and re-exports the rest. The registry lives at ``$AXHW_RTL_REGISTRY`` or ``~/.cache/axhw/rtl-verify/registry.json`` (``$AXHW_CACHE``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from axhw.arith.verification import add_record, coverage, model_hash, records, registry_path, rtl_inputs_hash
from axhw.rtl.generate import MultiplierConfig, generate

__all__ = ["coverage", "model_hash", "record", "records", "registry_path", "rtl_hash"]


def rtl_hash(cfg: MultiplierConfig) -> str:
    """SHA-256 (16 hex digits) of the RTL generated now for ``cfg`` (file names and texts)."""
    h = hashlib.sha256()
    for name, text in sorted(generate(cfg).items()):
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()[:16]


def record(cfg: MultiplierConfig, simulator: str, simulator_version: str | None, vectors: int, ok: bool,
           mismatches: int, seconds: float = 0.0, path: Path | None = None) -> dict[str, Any]:
    """Add (or replace: one per configuration, simulator and code version) a verification record
    (stored by :func:`axhw.arith.verification.add_record`, where :func:`coverage` looks)."""
    entry = {
        "config_id": cfg.config_id,
        "design": cfg.design,
        "bits": cfg.bits,
        "k": cfg.k,
        "signed": cfg.signed,
        "model_hash": model_hash(),
        "rtl_hash": rtl_hash(cfg),
        "rtl_inputs_hash": rtl_inputs_hash(),
        "simulator": simulator,
        "simulator_version": simulator_version,
        "vectors": vectors,
        "exhaustive": vectors >= 4**cfg.bits,
        "mismatches": mismatches,
        "ok": ok,
        "seconds": round(seconds, 3),
    }
    return add_record(entry, ("config_id", "simulator", "model_hash", "rtl_hash", "rtl_inputs_hash"), path)
