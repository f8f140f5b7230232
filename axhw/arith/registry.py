"""Multipliers by name: :func:`get_multiplier` resolves ``exact``, ``drum<k>``, the paper's ``K1``..``K4`` and
the circuits imported into the multiplier library (:mod:`axhw.arith.library`).

Why a module of its own: the library builds its circuits from :mod:`axhw.arith.multipliers`
(:class:`~axhw.arith.multipliers.LUTMultiplier`), and the name lookup needs both, so it sits above them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from axhw.arith import library
from axhw.arith.multipliers import DRUM, K_PRESETS, Exact, Multiplier

__all__ = ["get_multiplier", "multiplier_names"]

_DRUM_RE = re.compile(r"^drum(\d+)$")


def multiplier_names(imported: bool = True) -> list[str]:
    """Names :func:`get_multiplier` accepts (``drum<k>`` stands for any k in 1..bits), then the circuits
    imported into the multiplier library (:mod:`axhw.arith.library`) unless ``imported=False``."""
    builtin = ["exact", "drum<k>", *K_PRESETS]
    if not imported:
        return builtin
    return [*builtin, *library.names()]


def get_multiplier(
    name: str | Multiplier, bits: int = 8, signed: bool = True, presets: Mapping[str, int] | None = None
) -> Multiplier:
    """Registry: ``"exact"``, ``"drum<k>"``, the paper's ``"K1".."K4"`` (DRUM k=1..4 unless ``presets``
    maps them elsewhere), or the name of a circuit imported into the multiplier library
    (:func:`axhw.arith.library.load`; ``bits`` must be the circuit's width, an unsigned circuit is used through
    the sign-magnitude wrapper for signed operands). A :class:`Multiplier` object is returned as it is,
    after checking that its ``bits`` and ``signed`` match.

    >>> get_multiplier("K3", bits=8)
    DRUM(k=3, bits=8, signed=True)
    """
    if isinstance(name, Multiplier):
        if name.bits != bits or name.signed != signed:
            raise ValueError(f"multiplier {name!r} does not fit: bits={bits}, signed={signed} requested")
        return name
    if not isinstance(name, str):
        raise ValueError(f"multiplier must be a name or a Multiplier, got {type(name).__name__}")
    key = name.strip()
    presets = dict(K_PRESETS if presets is None else presets)
    if key.lower() == "exact":
        return Exact(bits, signed)
    if key.upper() in presets:
        return DRUM(presets[key.upper()], bits, signed)
    match = _DRUM_RE.match(key.lower())
    if match:
        return DRUM(int(match.group(1)), bits, signed)
    if key in library.names():
        return library.load(key, bits, signed)
    imported = library.names()
    raise ValueError(
        f"unknown multiplier {name!r}: valid names are 'exact', 'drum<k>' with k in 1..{bits}, "
        f"{', '.join(sorted(presets))}"
        f"{', and the imported circuits ' + ', '.join(imported) if imported else ''} "
        f"(import one with `axhw multipliers import`)"
    )
