"""Shape of the SRAM voltage-energy model: monotone in V, dynamic ~ V^2, leakage ~ V exp(V)."""

from __future__ import annotations

import math

import pytest

from axhw.power.sram_energy import (
    SRAMTechnology,
    leakage_per_bit_w,
    read_energy_per_bit_j,
    storage_power,
)

VOLTS = [400.0, 500.0, 660.0, 850.0, 1000.0, 1100.0]


def test_dynamic_is_cv2() -> None:
    e_nom = read_energy_per_bit_j(1100)
    for v in VOLTS:
        assert read_energy_per_bit_j(v) == pytest.approx(e_nom * (v / 1100) ** 2, rel=1e-12)


def test_monotone_in_voltage() -> None:
    dyn = [read_energy_per_bit_j(v) for v in VOLTS]
    leak = [leakage_per_bit_w(v) for v in VOLTS]
    assert dyn == sorted(dyn) and len(set(dyn)) == len(dyn)
    assert leak == sorted(leak) and len(set(leak)) == len(leak)


def test_leakage_is_v_times_exponential_current() -> None:
    # I_leak = P / V must be exponential in V: log-current is linear (DIBL).
    logs = [math.log(leakage_per_bit_w(v) / (v / 1e3)) for v in VOLTS]
    slopes = [(logs[i + 1] - logs[i]) / (VOLTS[i + 1] - VOLTS[i]) for i in range(len(VOLTS) - 1)]
    assert max(slopes) == pytest.approx(min(slopes), rel=1e-9)
    tech = SRAMTechnology()
    assert slopes[0] * 1e3 == pytest.approx(tech.dibl_eta / (tech.subthreshold_n * 0.02585), rel=1e-9)


def test_anchors_and_ntv_saving() -> None:
    tech = SRAMTechnology()
    assert leakage_per_bit_w(500) == pytest.approx(0.5 * 12e-6 / 2**20, rel=1e-9)  # Wang et al. 2008 anchor
    assert 0.2e-12 < tech.read_energy_nom_j < 0.5e-12
    # Dreslinski et al. 2010: roughly an order of magnitude from nominal to near threshold.
    assert 5 < read_energy_per_bit_j(1100) / read_energy_per_bit_j(400) < 12


def test_storage_power_sums_and_range() -> None:
    p = storage_power(660, 10_000, 8, 1e8)
    assert p.total_w == pytest.approx(p.dynamic_w + p.leakage_w)
    assert p.dynamic_w == pytest.approx(1e8 * 8 * read_energy_per_bit_j(660))
    with pytest.raises(ValueError, match="valid range"):
        read_energy_per_bit_j(300)
