"""Liberty function parsing: precedence, every operator, malformed input."""

from __future__ import annotations

from itertools import product

import pytest

from axhw.power.pdk.functions import evaluate, parse, variables


@pytest.mark.parametrize(("text", "reference"), [
    ("!A", lambda a, b, c: not a),
    ("A&B|C", lambda a, b, c: (a and b) or c),
    ("A|B&C", lambda a, b, c: a or (b and c)),
    ("A^B&C", lambda a, b, c: (a != b) and c),  # ^ binds tighter than &
    ("!(A^B^C)", lambda a, b, c: (a != b) == c),
    ("(A&!C)|(B&C)", lambda a, b, c: (a and not c) or (b and c)),
    ("!!A", lambda a, b, c: bool(a)),
])
def test_evaluate_matches_python(text, reference):
    expr = parse(text)
    for a, b, c in product((0, 1), repeat=3):
        assert evaluate(expr, {"A": a, "B": b, "C": c}) == bool(reference(a, b, c)), (text, a, b, c)


def test_constants_and_variables():
    assert evaluate(parse("1"), {}) is True
    assert evaluate(parse("0"), {}) is False
    assert variables(parse("(A0&!S)|(A1&S)")) == {"A0", "A1", "S"}


@pytest.mark.parametrize("bad", ["A&", "(A|B", "A B)", "A+B", "&A", ""])
def test_malformed_is_refused(bad):
    with pytest.raises(ValueError, match="function"):
        parse(bad)
