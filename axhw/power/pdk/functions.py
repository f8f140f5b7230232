"""Liberty boolean functions (``!``, ``^``, ``&``, ``|``, parentheses, ``0``/``1``): parse and evaluate.

The characterizer needs each cell's function twice: to find which side inputs sensitize an arc (and so its
``timing_sense``), and to check the transistor netlist against it (a DC truth table, :mod:`.characterize`). The
precedence is the Liberty reference manual's: ``!`` binds tightest, then ``^``, then ``&``, then ``|``.

>>> f = parse("!((A1&A2)|B1)")
>>> [evaluate(f, {"A1": a, "A2": b, "B1": c}) for a, b, c in [(1, 1, 0), (0, 1, 0), (0, 0, 1)]]
[False, True, False]
>>> sorted(variables(parse("(A&!S)|(B&S)")))
['A', 'B', 'S']
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["Expr", "evaluate", "parse", "variables"]

#: ("const", bool) | ("var", name) | ("not", e) | ("and"|"or"|"xor", e1, e2)
Expr = tuple

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z_0-9]*)|([01])|(.))")
_BINARY = {"|": ("or", 1), "&": ("and", 2), "^": ("xor", 3)}


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        tok = m.group(1) or m.group(2) or m.group(3)
        if tok is None:
            continue
        if m.group(3) is not None and tok not in "!&|^()":
            raise ValueError(f"function {text!r}: unexpected character {tok!r}")
        out.append(tok)
    return out


def parse(text: str) -> Expr:
    """Parse a Liberty function string; raises ``ValueError`` on a malformed one."""
    toks = _tokens(text)
    pos = 0

    def atom() -> Expr:
        nonlocal pos
        if pos >= len(toks):
            raise ValueError(f"function {text!r}: ends early")
        tok = toks[pos]
        pos += 1
        if tok == "!":
            return ("not", atom())
        if tok == "(":
            inner = binary(1)
            if pos >= len(toks) or toks[pos] != ")":
                raise ValueError(f"function {text!r}: missing ')'")
            pos += 1
            return inner
        if tok in ("0", "1"):
            return ("const", tok == "1")
        if tok in _BINARY or tok == ")":
            raise ValueError(f"function {text!r}: unexpected {tok!r}")
        return ("var", tok)

    def binary(level: int) -> Expr:
        nonlocal pos
        left = atom() if level > 3 else binary(level + 1)
        while pos < len(toks) and toks[pos] in _BINARY and _BINARY[toks[pos]][1] == level:
            op = _BINARY[toks[pos]][0]
            pos += 1
            right = atom() if level >= 3 else binary(level + 1)
            left = (op, left, right)
        return left

    expr = binary(1)
    if pos != len(toks):
        raise ValueError(f"function {text!r}: unexpected {toks[pos]!r}")
    return expr


def evaluate(expr: Expr, values: Mapping[str, int | bool]) -> bool:
    """The value of ``expr`` with each variable taken from ``values``."""
    kind = expr[0]
    if kind == "const":
        return bool(expr[1])
    if kind == "var":
        return bool(values[expr[1]])
    if kind == "not":
        return not evaluate(expr[1], values)
    a, b = evaluate(expr[1], values), evaluate(expr[2], values)
    return {"and": a and b, "or": a or b, "xor": a != b}[kind]


def variables(expr: Expr) -> set[str]:
    """The names ``expr`` reads."""
    if expr[0] == "var":
        return {expr[1]}
    if expr[0] == "const":
        return set()
    return set().union(*(variables(e) for e in expr[1:]))
