"""Write characterization results as a Liberty library that Yosys (``dfflibmap``, ``abc -liberty``) and the
2019 OpenSTA this project uses both read.

Format choices come from issue 29's trial: the power tables' axis is ``input_transition_time`` (OpenSTA 2019
knows no other name for it), ``default_operating_conditions`` follows the ``operating_conditions`` group it
names, and flip-flop/latch functions are bare pin names. Units: ns, pF, V, mA, kOhm, nW; internal energies are
therefore in pJ (pF x V^2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["corner_name", "library_text"]


def corner_name(voltage: float, temp_c: float = 25.0) -> str:
    """sky130's corner naming: ``tt_025C_1v80``."""
    mv = round(voltage * 1000)
    return f"tt_{round(temp_c):03d}C_{mv // 1000}v{(mv % 1000) // 10:02d}"


def _nums(xs: Sequence[float]) -> str:
    return '"' + ", ".join(f"{x:.7g}" for x in xs) + '"'


def _table(name: str, template: str, ind: list[Sequence[float]], values: Any, pad: str) -> list[str]:
    lines = [f"{pad}{name} ({template}) {{"]
    for k, axis in enumerate(ind, start=1):
        lines.append(f"{pad}  index_{k} ({_nums(axis)});")
    if ind and len(ind) == 2:
        rows = ", \\\n".join(f"{pad}    {_nums(r)}" for r in values)
        lines.append(f"{pad}  values ( \\\n{rows});")
    else:
        lines.append(f"{pad}  values ({_nums(values)});")
    lines.append(f"{pad}}}")
    return lines


def _header(name: str, voltage: float, slews: Sequence[float], loads: Sequence[float], note: str) -> list[str]:
    corner = corner_name(voltage)
    lines = [f"library ({name}) {{",
             f'  comment : "{note}";',
             "  delay_model : table_lookup;",
             "  in_place_swap_mode : match_footprint;",
             '  time_unit : "1ns";', '  voltage_unit : "1V";', '  current_unit : "1mA";',
             '  pulling_resistance_unit : "1kohm";', '  leakage_power_unit : "1nW";',
             "  capacitive_load_unit (1.0, pf);",
             "  nom_process : 1.0;", "  nom_temperature : 25.0;", f"  nom_voltage : {voltage:g};",
             f"  operating_conditions ({corner}) {{", "    process : 1.0;", "    temperature : 25.0;",
             f"    voltage : {voltage:g};", "    tree_type : balanced_tree;", "  }",
             f"  default_operating_conditions : {corner};"]
    for edge in ("rise", "fall"):
        lines += [f"  input_threshold_pct_{edge} : 50.0;", f"  output_threshold_pct_{edge} : 50.0;",
                  f"  slew_lower_threshold_pct_{edge} : 20.0;", f"  slew_upper_threshold_pct_{edge} : 80.0;"]
    lines += ["  slew_derate_from_library : 1.0;", "  default_cell_leakage_power : 0.0;",
              "  default_fanout_load : 1.0;", "  default_input_pin_cap : 0.0;", "  default_output_pin_cap : 0.0;",
              "  default_inout_pin_cap : 0.0;", "  default_leakage_power_density : 0.0;",
              f"  default_max_transition : {max(slews):g};",
              "  lu_table_template (delay_template) {", "    variable_1 : input_net_transition;",
              "    variable_2 : total_output_net_capacitance;", f"    index_1 ({_nums(slews)});",
              f"    index_2 ({_nums(loads)});", "  }",
              "  power_lut_template (energy_template) {", "    variable_1 : input_transition_time;",
              "    variable_2 : total_output_net_capacitance;", f"    index_1 ({_nums(slews)});",
              f"    index_2 ({_nums(loads)});", "  }",
              "  power_lut_template (energy_template_1d) {", "    variable_1 : input_transition_time;",
              f"    index_1 ({_nums(slews)});", "  }",
              "  lu_table_template (constraint_template) {", "    variable_1 : related_pin_transition;",
              "    variable_2 : constrained_pin_transition;", f"    index_1 ({_nums(slews)});",
              f"    index_2 ({_nums(slews)});", "  }"]
    return lines


def _bare(expr: str) -> str:
    """A pin name bare (Yosys's dfflibmap wants ``clocked_on : CLK``), any other expression quoted."""
    return expr if expr.isidentifier() else f'"{expr}"'


def _pin_internal(internal: dict[str, Any], slews: Sequence[float], pad: str) -> list[str]:
    lines = [f"{pad}internal_power () {{"]
    if internal.get("related_pin"):
        lines.append(f'{pad}  related_pin : "{internal["related_pin"]}";')
    if internal.get("when"):
        lines.append(f'{pad}  when : "{internal["when"]}";')
    for q in ("rise_power", "fall_power"):
        lines += _table(q, "energy_template_1d", [slews], internal[q], pad + "  ")
    lines.append(f"{pad}}}")
    return lines


def _cell(r: dict[str, Any], area: float) -> list[str]:
    slews, loads = r["slews_ns"], r["loads_pf"]
    lines = [f"  cell ({r['cell']}) {{", f"    area : {area:g};",
             f"    cell_leakage_power : {r['cell_leakage_nw']:.7g};"]
    if r["kind"] == "icg":
        lines.append('    clock_gating_integrated_cell : "latch_posedge";')
    for leak in r["leakage"]:
        lines += ["    leakage_power () {", f'      when : "{leak["when"]}";', f"      value : {leak['nw']:.7g};", "    }"]
    if r["kind"] == "ff":
        lines += ["    ff (IQ, IQN) {", f"      clocked_on : {_bare(r['clock'])};", f"      next_state : {_bare(r['data'])};",
                  "    }"]
    if r["kind"] in ("latch", "icg"):
        lines += ["    latch (IQ, IQN) {", f"      enable : {_bare(r['enable'])};", f"      data_in : {_bare(r['data'])};",
                  "    }"]
    for pin, p in r["inputs"].items():
        lines += [f"    pin ({pin}) {{", "      direction : input;",
                  f"      capacitance : {p['capacitance']:.7g};",
                  f"      rise_capacitance : {p['rise_capacitance']:.7g};",
                  f"      fall_capacitance : {p['fall_capacitance']:.7g};"]
        if p.get("clock"):
            lines.append("      clock : true;")
        if r["kind"] == "icg":
            lines.append("      clock_gate_clock_pin : true;" if p.get("clock") else "      clock_gate_enable_pin : true;")
        for internal in p.get("internals", [p["internal"]] if "internal" in p else []):
            lines += _pin_internal(internal, slews, "      ")
        for con in p.get("constraints", []):
            lines += ["      timing () {", f'        related_pin : "{con["related_pin"]}";',
                      f"        timing_type : {con['timing_type']};"]
            for q in ("rise_constraint", "fall_constraint"):
                lines += _table(q, "constraint_template", [con["axis"], con["axis"]], con[q], "        ")
            lines.append("      }")
        lines.append("    }")
    for out, o in r["outputs"].items():
        lines += [f"    pin ({out}) {{", "      direction : output;", f'      function : "{o["function"]}";',
                  f"      max_capacitance : {max(loads):.7g};"]
        if r["kind"] == "icg":
            lines.append("      clock_gate_out_pin : true;")
        for pin, a in o["arcs"].items():
            lines += ["      timing () {", f'        related_pin : "{pin}";', f"        timing_sense : {a['sense']};"]
            if a.get("timing_type"):
                lines.append(f"        timing_type : {a['timing_type']};")
            for q in ("cell_rise", "rise_transition", "cell_fall", "fall_transition"):
                if q in a:
                    lines += _table(q, "delay_template", [slews, loads], a[q], "        ")
            lines.append("      }")
            if "rise_power" in a or "fall_power" in a:
                lines += ["      internal_power () {", f'        related_pin : "{pin}";']
                for q in ("rise_power", "fall_power"):
                    if q in a:
                        lines += _table(q, "energy_template", [slews, loads], a[q], "        ")
                lines.append("      }")
        lines.append("    }")
    lines.append("  }")
    return lines


def library_text(name: str, voltage: float, results: Sequence[dict[str, Any]], areas: dict[str, float],
                 note: str) -> str:
    """A Liberty library from :func:`~axhw.power.pdk.characterize.characterize_comb` (and sequential) results.

    The templates' axes are the first result's; each table also states its own (loads scale with drive).
    """
    if not results:
        raise ValueError("no characterized cells to write")
    first = results[0]
    lines = _header(name, voltage, first["slews_ns"], first["loads_pf"], note)
    for r in sorted(results, key=lambda r: r["cell"]):
        lines += _cell(r, areas[r["cell"]])
    lines.append("}")
    return "\n".join(lines) + "\n"
