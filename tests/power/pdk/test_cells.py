"""The cell set: functions parse, arcs and their unateness follow from the functions."""

from __future__ import annotations

import pytest

from axhw.power.pdk.cells import SKY130_HD, combinational_arcs, spec_by_name


def test_every_issue_29_family_is_there():
    families = {c.family for c in SKY130_HD}
    assert {"inv", "buf", "nand2", "nand3", "nor2", "nor3", "and2", "or2", "xor2", "xnor2", "a21oi", "o21ai",
            "mux2", "fa", "ha", "dfxtp", "dlxtp", "dlclkp", "conb"} <= families


def test_arcs_of_xor_are_non_unate_and_of_nand_negative():
    xor = combinational_arcs(spec_by_name("xor2_1"))
    assert {(a.pin, a.positive) for a in xor} == {("A", True), ("A", False), ("B", True), ("B", False)}
    assert all(not a.positive for a in combinational_arcs(spec_by_name("nand3_1")))
    assert len(combinational_arcs(spec_by_name("nand3_1"))) == 3  # one sensitizing side assignment per pin


def test_full_adder_arcs_cover_both_outputs():
    arcs = combinational_arcs(spec_by_name("fa_1"))
    assert sum(a.out == "SUM" for a in arcs) == 12  # every side assignment sensitizes the sum
    assert sum(a.out == "COUT" for a in arcs) == 6  # the carry only when the other two differ


def test_mux_arcs_from_select_need_different_data():
    arcs = [a for a in combinational_arcs(spec_by_name("mux2_1")) if a.pin == "S"]
    assert {tuple(a.side) for a in arcs} == {(("A0", 0), ("A1", 1)), (("A0", 1), ("A1", 0))}


def test_unknown_cell_lists_the_known_ones():
    with pytest.raises(KeyError, match="nand2_1"):
        spec_by_name("nand9_1")
