"""SRAM weight-storage energy versus supply voltage (power flow, step 3).

The paper evaluated NTV storage with CACTI-P at 65 nm (Li et al., ICCAD 2011), which is not available
offline; this model keeps CACTI-P's structure (dynamic access energy + cell leakage) with constants from
published measurements, each cited where it is defined. Technology assumptions (all explicit):

* Node: 65 nm, nominal supply 1.1 V (the paper's TSMC 65 nm and its "nominal 1.1 V").
* Dynamic read energy per bit scales as ``C V^2`` (switched bit-line/word-line capacitance fixed, swing =
  supply): ``E(V) = E_nom (V / V_nom)^2``. Anchor: Horowitz, "Computing's energy problem (and what we can
  do about it)", ISSCC 2014: an 8 KB SRAM 64-bit read costs 10 pJ at 45 nm, 0.9 V, i.e. 0.156 pJ/bit;
  scaled to 65 nm / 1.1 V by capacitance ~ feature size (65/45) and V^2 ((1.1/0.9)^2): 0.337 pJ/bit.
  Consistency check: Dreslinski et al., "Near-threshold computing", Proc. IEEE 98(2), 2010, report ~10x
  energy reduction from nominal to near-threshold supply; C V^2 from 1.1 V to 0.4 V gives 7.6x.
* Leakage power per bit ``P(V) = V * I_leak(V)`` with a DIBL-type exponential
  ``I_leak(V) = I_0 exp(eta (V - V_0) / (n v_T))`` (subthreshold current with drain-induced barrier
  lowering; Roy, Mukhopadhyay, Mahmoodi-Meimand, Proc. IEEE 91(2), 2003, eq. for I_sub). Anchor: Wang et
  al. (Intel), "A 1.1 GHz 12 uA/Mb-leakage SRAM design in 65 nm ultra-low-power CMOS", IEEE JSSC 43(1),
  2008: 12 uA/Mb at the 0.5 V retention voltage, i.e. I_0 = 11.4 pA/bit at V_0 = 0.5 V. eta = 0.1 V/V and
  n = 1.5 are typical bulk 65 nm values (assumed), v_T = kT/q at 300 K.
* Flip-rate/voltage anchors are those of :mod:`axhw.arith.sram` (Dreslinski et al. 2010 via the paper).

Storage power of a network: every multiply reads one weight word (``bits`` bits) from SRAM at the MAC rate,
and every stored parameter bit (weights and biases) leaks all the time: at the NTV supply, except bias words
kept in reliable memory (``HardwareConfig.ntv_biases=False``), which leak at the nominal supply
(:func:`storage_bits_split`, ``storage_power(..., nominal_bits=...)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from axhw.arith.sram import NOMINAL_MV, VOLTAGE_RANGE_MV
from axhw.golden.network import QuantizedNetwork

__all__ = ["SRAMTechnology", "StoragePower", "leakage_per_bit_w", "read_energy_per_bit_j", "storage_bits",
           "storage_bits_split", "storage_power"]

#: Thermal voltage kT/q at 300 K, in V.
THERMAL_VOLTAGE = 0.02585


@dataclass(frozen=True)
class SRAMTechnology:
    """SRAM constants (65 nm, 1.1 V nominal); every default is cited in the module docstring.

    Attributes:
        node_nm: technology node the constants describe.
        nominal_mv: nominal supply (reliable, no flips).
        read_energy_nom_j: read energy per bit at nominal (Horowitz ISSCC 2014, scaled 45 -> 65 nm, 0.9 -> 1.1 V).
        leak_i0_a: leakage current per bit at ``leak_v0_mv`` (Wang et al. JSSC 2008: 12 uA/Mb at 0.5 V).
        leak_v0_mv: voltage of the leakage anchor.
        dibl_eta: DIBL coefficient (V/V), typical bulk 65 nm (assumed).
        subthreshold_n: subthreshold slope factor (assumed).
    """

    node_nm: float = 65.0
    nominal_mv: float = NOMINAL_MV
    read_energy_nom_j: float = 10e-12 / 64 * (65.0 / 45.0) * (1.1 / 0.9) ** 2
    leak_i0_a: float = 12e-6 / 2**20
    leak_v0_mv: float = 500.0
    dibl_eta: float = 0.1
    subthreshold_n: float = 1.5


def _check(voltage_mv: float) -> float:
    lo, hi = VOLTAGE_RANGE_MV
    if not lo <= voltage_mv <= hi:
        raise ValueError(f"voltage {voltage_mv!r} mV out of range: valid range is [{lo:g}, {hi:g}] mV")
    return voltage_mv / 1e3


def read_energy_per_bit_j(voltage_mv: float, tech: SRAMTechnology | None = None) -> float:
    """Dynamic read energy per bit (J) at ``voltage_mv``: ``E_nom (V / V_nom)^2``.

    >>> round(read_energy_per_bit_j(550) / read_energy_per_bit_j(1100), 3)
    0.25
    """
    tech = tech or SRAMTechnology()
    v = _check(voltage_mv)
    return tech.read_energy_nom_j * (v / (tech.nominal_mv / 1e3)) ** 2


def leakage_per_bit_w(voltage_mv: float, tech: SRAMTechnology | None = None) -> float:
    """Leakage power per stored bit (W): ``V * I_0 exp(eta (V - V_0) / (n v_T))``.

    >>> leakage_per_bit_w(400) < leakage_per_bit_w(1100)
    True
    """
    tech = tech or SRAMTechnology()
    v = _check(voltage_mv)
    current = tech.leak_i0_a * math.exp(tech.dibl_eta * (v - tech.leak_v0_mv / 1e3)
                                        / (tech.subthreshold_n * THERMAL_VOLTAGE))
    return v * current


def storage_bits(qnet: QuantizedNetwork) -> tuple[int, int]:
    """(stored parameter bits, weight words: one read of every weight per inference).

    Weights are stored in their word format, biases in theirs (:attr:`IntLinear.bias_fmt`, per layer). The
    first number counts every parameter bit wherever it is stored (:func:`storage_bits_split` tells the NTV
    bits from those kept at nominal voltage). The second number equals the multiplies per inference of a
    fully-connected network only; a convolution reuses each weight once per output pixel
    (:meth:`QuantizedNetwork.multiplies_per_inference` counts the products).
    """
    ntv, nominal, reads = storage_bits_split(qnet)
    return ntv + nominal, reads


def storage_bits_split(qnet: QuantizedNetwork) -> tuple[int, int, int]:
    """(parameter bits in the NTV memory, bits kept in reliable memory at nominal voltage, weight words).

    Weight words are always in the NTV memory; a layer's bias words (``bias.numel() * bias_fmt.bits``) are
    there too unless the layer keeps them at nominal voltage (:attr:`IntLinear.bias_in_ntv` False,
    ``HardwareConfig.ntv_biases``), so their leakage is charged at the nominal supply
    (``storage_power(..., nominal_bits=...)``). The weight words are :func:`storage_bits`' second number.
    """
    ntv = nominal = reads = 0
    for layer in qnet.layers:
        assert layer.bias_fmt is not None
        bias_bits = layer.bias.numel() * layer.bias_fmt.bits
        ntv += layer.weight.numel() * layer.weight_fmt.bits + (bias_bits if layer.bias_in_ntv else 0)
        nominal += 0 if layer.bias_in_ntv else bias_bits
        reads += layer.weight.numel()
    return ntv, nominal, reads


@dataclass(frozen=True)
class StoragePower:
    """SRAM power at one voltage: dynamic (reads at the MAC rate) + leakage of all stored bits, in W."""

    voltage_mv: float
    dynamic_w: float
    leakage_w: float

    @property
    def total_w(self) -> float:
        return self.dynamic_w + self.leakage_w


def storage_power(voltage_mv: float, stored_bits: int, word_bits: int, mac_rate_hz: float,
                  tech: SRAMTechnology | None = None, nominal_bits: int = 0) -> StoragePower:
    """Storage power: one ``word_bits`` weight read per multiply at ``mac_rate_hz``, plus the leakage of
    ``stored_bits`` at ``voltage_mv`` and of ``nominal_bits`` (parameters kept in reliable memory, e.g. biases
    with ``ntv_biases=False``: :func:`storage_bits_split`) at the nominal supply.

    >>> p = storage_power(660, 50_000, 8, 100e6)
    >>> p.total_w < storage_power(1100, 50_000, 8, 100e6).total_w
    True
    >>> storage_power(660, 0, 8, 0, nominal_bits=10).leakage_w == 10 * leakage_per_bit_w(1100)
    True
    """
    if stored_bits < 0 or nominal_bits < 0:
        raise ValueError(f"stored_bits={stored_bits}, nominal_bits={nominal_bits}: bit counts must be >= 0")
    tech = tech or SRAMTechnology()
    dyn = mac_rate_hz * word_bits * read_energy_per_bit_j(voltage_mv, tech)
    leak = stored_bits * leakage_per_bit_w(voltage_mv, tech)
    if nominal_bits:
        leak += nominal_bits * leakage_per_bit_w(tech.nominal_mv, tech)
    return StoragePower(float(voltage_mv), dyn, leak)
