"""What the hardware of a layer is: :class:`HardwareConfig`, the one configuration every hardware-aware
module of :mod:`axhw.nn` holds (mode, multiplier, word lengths, SRAM voltage, calibration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from axhw.arith.fixedpoint import FixedPoint, fit_width
from axhw.arith.multipliers import Multiplier
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NOMINAL_MV, NTVStorage

__all__ = ["BiasWord", "HardwareConfig", "Mode"]

Mode = Literal["float", "quantized", "hardware"]
BiasWord = Literal["fit", "fixed"]


@dataclass(frozen=True, init=False)
class HardwareConfig:
    """What the hardware model of a layer is.

    Attributes:
        mode: ``float`` (ideal), ``quantized`` (fixed point, exact products) or ``hardware``.
        multiplier: multiplier for ``hardware`` mode: a name (``exact``, ``drum<k>``, ``K1``..``K4``, or a
            circuit imported into the multiplier library, :mod:`axhw.arith.library`) or a
            :class:`~axhw.arith.multipliers.Multiplier` object such as a ``LUTMultiplier`` (its ``bits`` must match).
        bits: word length of weights and activations (docs/training.md, "Number formats": 8 by default, 16 works).
        bias_bits: width of the stored bias word. Biases are stored at the accumulator's scale
            (docs/training.md, "Number formats": they are added into it unshifted) in a word of
            ``2 * bits`` bits by default (the product width; capped at ``acc_bits``). Why not the full accumulator word: trained biases need
            far fewer bits (<= 11 on the Table 1 networks), and every unused high-order bit is one more
            bit an NTV flip can turn into a large error, up to +-2**(bias_bits-1) (paper section 3.2: remove
            unnecessary high-order bits to confine storage noise). Clean inference is identical as long as the biases fit;
            values that do not fit saturate. With ``bias_word="fit"`` this is the widest word a layer's
            biases may get, not the width they are stored in.
        bias_word: how wide each layer's stored bias word is (docs/hardware-models.md, "NTV SRAM storage").
            ``fit`` (default): the narrowest two's-complement word (2..``bias_bits`` bits,
            :func:`axhw.arith.fixedpoint.fit_width`) holding that layer's bias codes at the accumulator scale,
            i.e. the high-order bits no bias uses are dropped, per layer, as dynamic fixed point sizes the
            weights' words to their largest value (paper section 3.2, "unnecessary high order bits ... should
            be eliminated to confine the effect of the noise"). Lossless: the codes, hence clean inference,
            are those of ``fixed``. ``fixed``: every layer's word is ``bias_bits`` wide (the behaviour before
            the option existed), so a top-bit flip adds +-2**(bias_bits-1) to the accumulator.
        ntv_biases: whether the bias words sit in the NTV memory with the weights (default True: the paper's
            parameters W are weights and biases, section 2.2, and every stored bit of them flips, section 4.1)
            and flip in the same one-draw-per-layer stream, weight words then bias words; ``False``: biases
            are kept in reliable memory at the nominal supply (no bias flips; the draw covers the weight
            words only) and their storage is charged at nominal voltage
            (:func:`axhw.power.sram_energy.storage_bits_split`).
        acc_bits: accumulator word length; biases are stored in it. ``None``: 32 for words up to 8 bits
            (docs/training.md, "Number formats"), ``2 * bits + 16`` above (16-bit products summed over
            fan-ins up to 2**15).
        voltage_mv: SRAM supply for parameter storage in ``hardware`` mode (1100 = reliable).
        calibration: how ``frac`` is chosen for weights and activations (``maxabs`` or ``percentile``).
        percentile: percentile used by ``percentile`` calibration.
        saturation_ste: also zero the straight-through gradient of outputs that the re-quantizer clamped to
            the next layer's format (standard QAT practice, on top of eq. 12). On by default; ``False`` is
            eq. 12 alone, as the paper states it. Why: with activation formats calibrated per epoch,
            hidden layers saturate early in training from random init and the gradient of the unclamped
            float path runs away (measured on MNIST-MLP: pas stalls at 9.8% without it, see
            docs/training.md). Outputs inside the format keep eq. 12's gradient unchanged.
        approx_multiplier: in ``hardware`` mode, the multiplier of the neurons each layer marks in
            ``approx_neurons`` (ApproxAnn's per-neuron modes); None: masks are ignored.
    """

    mode: Mode
    multiplier: str | Multiplier
    bits: int
    acc_bits: int
    bias_bits: int
    voltage_mv: float
    calibration: Literal["maxabs", "percentile"]
    percentile: float
    approx_multiplier: str | Multiplier | None
    saturation_ste: bool
    bias_word: BiasWord
    ntv_biases: bool

    # Written out (the dataclass generates no __init__) so that ``acc_bits``/``bias_bits`` accept None for
    # "the default for ``bits``" while the stored fields are always resolved ints. The fields stay ordinary
    # dataclass fields: repr, equality, hash, ``asdict`` and ``dataclasses.replace`` are unchanged
    # (``replace`` passes the resolved widths on, so ``replace(hw, bits=16)`` keeps ``hw``'s widths).
    def __init__(self, mode: Mode = "float", multiplier: str | Multiplier = "exact", bits: int = 8,
                 acc_bits: int | None = None, bias_bits: int | None = None, voltage_mv: float = NOMINAL_MV,
                 calibration: Literal["maxabs", "percentile"] = "maxabs", percentile: float = 99.99,
                 approx_multiplier: str | Multiplier | None = None, saturation_ste: bool = True,
                 bias_word: BiasWord = "fit", ntv_biases: bool = True) -> None:
        if mode not in ("float", "quantized", "hardware"):
            raise ValueError(f"unknown mode {mode!r}: valid modes are 'float', 'quantized', 'hardware'")
        if acc_bits is None:
            acc_bits = 32 if bits <= 8 else 2 * bits + 16
        if bias_bits is None:
            bias_bits = min(2 * bits, acc_bits)
        values = {"mode": mode, "multiplier": multiplier, "bits": bits, "acc_bits": acc_bits, "bias_bits": bias_bits,
                  "voltage_mv": voltage_mv, "calibration": calibration, "percentile": percentile,
                  "approx_multiplier": approx_multiplier, "saturation_ste": saturation_ste,
                  "bias_word": bias_word, "ntv_biases": ntv_biases}
        for name, value in values.items():
            object.__setattr__(self, name, value)  # frozen
        self.get_multiplier()  # validates name and bits
        self.get_approx_multiplier()
        self.storage()  # validates the voltage
        FixedPoint(self.acc_bits, 0)
        if not 2 <= self.bias_bits <= self.acc_bits:
            raise ValueError(f"bias_bits={self.bias_bits} out of range: valid range is [2, acc_bits={self.acc_bits}]")
        if bias_word not in ("fit", "fixed"):
            raise ValueError(f"unknown bias_word {bias_word!r}: valid choices are 'fit', 'fixed'")
        if not isinstance(ntv_biases, bool):
            raise ValueError(f"ntv_biases must be True or False, got {ntv_biases!r}")

    def bias_word_bits(self, codes: torch.Tensor) -> int:
        """Width of a layer's stored bias word for its bias ``codes`` (already saturated to ``bias_bits``):
        :func:`~axhw.arith.fixedpoint.fit_width` of them under ``bias_word="fit"``, else ``bias_bits``. The
        one place the eager forward, the fused forward and the integer export take it from, so all three store
        the same words and draw the same flips."""
        return fit_width(codes, self.bias_bits) if self.bias_word == "fit" else self.bias_bits

    def get_multiplier(self) -> Multiplier:
        return get_multiplier(self.multiplier if self.mode == "hardware" else "exact", self.bits)

    def get_approx_multiplier(self) -> Multiplier | None:
        """The multiplier of approximate-mode neurons, or None (outside ``hardware`` mode, or unset)."""
        if self.approx_multiplier is None:
            return None
        mul = get_multiplier(self.approx_multiplier, self.bits)
        return mul if self.mode == "hardware" else None

    def storage(self) -> NTVStorage | None:
        st = NTVStorage(self.voltage_mv)
        return st if self.mode == "hardware" and st.flip_p > 0 else None
