"""The FlexFlow-style PE and the PE array (docs/rtl.md, "The array"): configuration, template contexts, registry entries.

One :class:`ArrayConfig` renders the templates (``rtl/pe*.v.j2``, ``rtl/array_*.v.j2``, ``rtl/mem.v.j2``),
lays out the memory images and the instruction stream (:mod:`axhw.rtl.program`) and parametrizes the cocotb
builds (:mod:`axhw.rtl.netverify`), so the three cannot drift. The instruction word's fields are defined once,
in :meth:`ArrayConfig.fields`, and both the sequencer's decoder and the encoder read them from there.

Designs ``pe`` and ``array`` join :data:`axhw.rtl.generate.DESIGNS`: with a plain
:class:`~axhw.rtl.generate.MultiplierConfig` (``k`` set: DRUM-k, ``k`` unset: exact) they use the default
geometry (:data:`DEFAULT_GEOMETRY`, sized for every network of the paper's Table 1: the largest MLP, MNIST
784-128-128-10, and LeNet-5). The multiplier
inside is the existing generator's, with its top module renamed (``mul_drum_k2_s8``, ``mul_exact_s8``) so
that an exact and an approximate multiplier can coexist in one PE (per-neuron modes, ``dual``). A circuit of
the multiplier library (:class:`~axhw.rtl.imported.ImportedConfig`: the user's Verilog behind the generated
port adapter, or inside the sign-magnitude wrapper for an unsigned circuit) takes the same place, behind a
``mul_import_*`` module (``rtl/mul_import.v.j2``); its sources are copied into the design unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

from axhw.arith.multipliers import DRUM, Exact, Multiplier, SeparableMultiplier
from axhw.rtl.generate import (
    DESIGNS,
    TEMPLATE_DIR,
    DesignSpec,
    MultiplierConfig,
    PortSpec,
    check_files,
    drum_files,
    exact_files,
    register_design,
    template_environment,
)
from axhw.rtl.imported import ImportedConfig

__all__ = [
    "DEFAULT_GEOMETRY",
    "ArrayConfig",
    "Field",
    "Geometry",
    "PEMultiplier",
    "array_ports",
    "generate_array",
    "generate_pe",
    "multiplier_config",
    "pe_ports",
]

#: What a PE multiplies with: a generated multiplier (exact, DRUM-k) or a library circuit.
PEMultiplier = MultiplierConfig | ImportedConfig
#: The template entry of a file copied as it is (an imported circuit's sources): its context holds ``text``.
RAW = ""


@dataclass(frozen=True)
class Field:
    """One instruction field: ``instr[hi:lo]``."""

    name: str
    lo: int
    width: int

    @property
    def hi(self) -> int:
        return self.lo + self.width - 1


def _pow2(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 2 or value & (value - 1):
        raise ValueError(f"{name}={value!r} must be a power of two >= 2 (the memories are addressed by full words)")


def _aw(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


@dataclass(frozen=True)
class ArrayConfig:
    """A PE array (or a single PE) to generate.

    Attributes:
        mul: the (approximate) multiplier of every PE, a ``drum`` or ``exact`` :class:`MultiplierConfig`, or an
            imported library circuit (:class:`~axhw.rtl.imported.ImportedConfig`, its signed use).
        pes: number of PEs (output neurons computed in parallel).
        max_fan_in: depth of each PE's neuron local memory (and of the lone PE's weight local memory): the
            largest layer fan-in.
        nbuf_depth: neuron buffer words (the input vector and every hidden layer's activations).
        wbuf_depth: weight store words of ``pes`` weights each (one word per input per group of outputs: every
            weight of the network, once; the PEs read it directly).
        bbuf_depth: bias buffer words of ``pes`` biases each (one per group of outputs).
        obuf_depth: output buffer words (the output layer's accumulators).
        imem_depth: instruction memory words (one per layer plus HALT).
        acc_bits: accumulator word (``acc_fmt.bits`` of the networks it runs; 32 by default, docs/training.md,
            "Number formats").
        bias_bits: stored bias word (``bias_fmt.bits``; narrower biases are sign-extended by the encoder).
        dual: every PE holds an exact multiplier too, chosen per output neuron by a mode bit stored beside
            its bias (ApproxAnn, Zhang et al. DATE 2015: 1 = approximate, 0 = exact).
    """

    mul: PEMultiplier
    pes: int = 16
    max_fan_in: int = 1024
    nbuf_depth: int = 2048
    wbuf_depth: int = 8192
    bbuf_depth: int = 64
    obuf_depth: int = 64
    imem_depth: int = 16
    acc_bits: int = 32
    bias_bits: int = 32
    dual: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.mul, ImportedConfig) and self.mul.design not in ("drum", "exact"):
            raise ValueError(f"the PE multiplier must be a 'drum' or 'exact' configuration or an imported circuit, "
                             f"got {self.mul.design!r}")
        if not self.mul.signed:
            raise ValueError("the PE array runs signed (two's-complement) networks: use a signed multiplier")
        if not isinstance(self.pes, int) or not 1 <= self.pes <= 256:
            raise ValueError(f"pes={self.pes!r} out of range: valid range is 1..256")
        for name in ("max_fan_in", "nbuf_depth", "wbuf_depth", "bbuf_depth", "obuf_depth", "imem_depth"):
            _pow2(name, getattr(self, name))
        pbits = 2 * self.mul.bits
        if not pbits <= self.acc_bits <= 62:
            raise ValueError(f"acc_bits={self.acc_bits} out of range: valid range is {pbits}..62")
        if not 2 <= self.bias_bits <= self.acc_bits:
            raise ValueError(f"bias_bits={self.bias_bits} out of range: valid range is 2..acc_bits={self.acc_bits}")

    # --- derived widths -----------------------------------------------------------------------------------

    @property
    def bits(self) -> int:
        """Activation and weight word (the multiplier's operand width)."""
        return self.mul.bits

    @property
    def imported(self) -> bool:
        """Whether the PEs multiply with an imported library circuit (its sources are the user's)."""
        return isinstance(self.mul, ImportedConfig)

    @property
    def config_id(self) -> str:
        """Build-directory name, e.g. ``array_drum_k2_s8_p8_l64_n256_w2048``."""
        dual = "_dual" if self.dual else ""
        return (
            f"array_{self.mul.config_id}_p{self.pes}_l{self.max_fan_in}_n{self.nbuf_depth}_w{self.wbuf_depth}"
            f"_b{self.bbuf_depth}_o{self.obuf_depth}_i{self.imem_depth}_a{self.acc_bits}_c{self.bias_bits}{dual}"
        )

    @property
    def pe_id(self) -> str:
        """Build-directory name of the PE alone."""
        dual = "_dual" if self.dual else ""
        return f"pe_{self.mul.config_id}_l{self.max_fan_in}_a{self.acc_bits}_c{self.bias_bits}{dual}"

    def widths(self) -> dict[str, int]:
        """Every derived width the templates and the encoder share."""
        acc, bits = self.acc_bits, self.bits
        naw, oaw = _aw(self.nbuf_depth), _aw(self.obuf_depth)
        max_fan_out = max(self.nbuf_depth, self.obuf_depth)
        return {
            "bits": bits,
            "pbits": 2 * bits,
            "acc": acc,
            "biasw": self.bias_bits,
            "bbw": self.bias_bits + int(self.dual),
            # exact sum of max_fan_in products plus the bias, one bit more than the saturated word
            "aw": max(acc, self.bias_bits, 2 * bits + self.max_fan_in.bit_length()) + 1,
            "law": _aw(self.max_fan_in),
            "lw": self.max_fan_in.bit_length(),
            "naw": naw,
            "oaw": oaw,
            "obw": max(naw, oaw),
            "waw": _aw(self.wbuf_depth),
            "baw": _aw(self.bbuf_depth),
            "iaw": _aw(self.imem_depth),
            "fow": max_fan_out.bit_length(),
            # feature-map dimensions and counts (conv / pool fields): up to max(nbuf, obuf) depth inclusive
            "dw": max(naw, oaw) + 1,
            # signed window coordinates (padding makes them negative) and signed neuron buffer addresses
            "cw": max(naw, oaw) + 3,
            "sa": max(naw, oaw) + 4,
            # output address arithmetic before truncation: base + pixel + lane offset
            "ow": max(naw, oaw) + max(1, (self.pes - 1).bit_length()) + 3,
            "fw": (max_fan_out + self.pes).bit_length(),
            "lanew": max(1, (self.pes - 1).bit_length()),
            # right shifts 1..acc-1, left shifts 1..bits
            "saw": max((acc - 1).bit_length(), bits.bit_length()),
            "qmax": (1 << (bits - 1)) - 1,
            "qmin": -(1 << (bits - 1)),
        }

    def fields(self) -> tuple[Field, ...]:
        """The instruction word, LSB first (decoded by ``array_seq``, encoded by :mod:`axhw.rtl.program`)."""
        w = self.widths()
        dw = w["dw"]
        spec = [
            ("op", 2),  # 1 = layer (convolution; fully-connected = 1x1 convolution of a 1x1 map), 2 = max pool, 0 = HALT
            ("last", 1),  # output layer: saturated accumulators to the output buffer
            ("relu", 1),
            ("left", 1),  # re-quantization shifts left (amt) instead of right with rounding
            ("amt", w["saw"]),
            ("fan_in", w["lw"]),  # products per output (in_channels * k_h * k_w); pool: window size
            ("fan_out", w["fow"]),  # output channels (fully-connected: output neurons); pool: channels
            ("in_base", w["naw"]),
            ("out_base", w["obw"]),
            ("w_base", w["waw"]),
            ("b_base", w["baw"]),
            ("k_h", w["lw"]),  # kernel (pool window) height and width
            ("k_w", w["lw"]),
            ("in_h", dw),  # input map height, width, height * width
            ("in_w", dw),
            ("in_hw", dw),
            ("out_h", dw),  # output map height, width, height * width
            ("out_w", dw),
            ("out_hw", dw),
            ("st_h", dw),  # stride
            ("st_w", dw),
            ("pad_t", dw),  # zero padding above and left of the map (below / right follow from out_h, out_w)
            ("pad_l", dw),
            ("row_step", dw),  # st_h * in_w: neuron buffer step of the window origin per output row
            ("org_row", dw),  # pad_t * in_w: the first window's row offset, negated
        ]
        out, lo = [], 0
        for name, width in spec:
            out.append(Field(name, lo, width))
            lo += width
        return tuple(out)

    @property
    def instr_bits(self) -> int:
        return sum(f.width for f in self.fields())

    def copy(self, **changes: Any) -> ArrayConfig:
        """A validated copy with some fields changed."""
        return replace(self, **changes)

    def approx_model(self) -> Multiplier:
        """The Python reference of the PEs' (approximate) multiplier (an imported circuit's: its table or
        gates, through the sign-magnitude wrapper for an unsigned circuit)."""
        return self.mul.model()

    def exact_model(self) -> SeparableMultiplier:
        return Exact(self.bits, True)


#: The default geometry: fits every network of the paper's Table 1 (largest MLP: MNIST 784-128-128-10; LeNet-5:
#: 8,084 activations kept for the layer-by-layer check, fan-in up to 400).
class Geometry(TypedDict):
    """The :class:`ArrayConfig` fields that size the array (keyword arguments: ``ArrayConfig(mul, **geometry)``)."""

    pes: int
    max_fan_in: int
    nbuf_depth: int
    wbuf_depth: int
    bbuf_depth: int
    obuf_depth: int
    imem_depth: int


DEFAULT_GEOMETRY: Geometry = {
    "pes": 16,
    "max_fan_in": 1024,
    "nbuf_depth": 16384,
    "wbuf_depth": 8192,
    "bbuf_depth": 64,
    "obuf_depth": 64,
    "imem_depth": 16,
}


def multiplier_config(cfg: MultiplierConfig) -> MultiplierConfig:
    """The multiplier inside a ``pe`` / ``array`` configuration: DRUM-k when ``k`` is set, else exact."""
    if cfg.k is None:
        return MultiplierConfig("exact", cfg.bits, None, cfg.signed)
    return MultiplierConfig("drum", cfg.bits, cfg.k, cfg.signed)


def _mul_module(cfg: PEMultiplier) -> str:
    return f"mul_{cfg.config_id}"


def _imported_what(cfg: ImportedConfig) -> str:
    wrap = "the sign-magnitude wrapper around the unsigned " if cfg.variant == "signed" else "the signed "
    return f"{wrap}{cfg.info.top}, sources sha256 {cfg.info.source_hash[:16]}"


def _mul_files(cfg: PEMultiplier) -> list[tuple[str, str, dict[str, object]]]:
    top = _mul_module(cfg)
    if isinstance(cfg, ImportedConfig):
        ctx: dict[str, object] = {"module": top, "inner": cfg.top, "name": cfg.info.name, "bits": cfg.bits,
                                  "pbits": 2 * cfg.bits, "what": _imported_what(cfg)}
        raw: list[tuple[str, str, dict[str, object]]] = [(n, RAW, {"text": t}) for n, t in cfg.rtl_files().items()]
        return [(f"{top}.v", "mul_import.v.j2", ctx), *raw]
    return drum_files(cfg, top) if cfg.design == "drum" else exact_files(cfg, top)


def _mul_desc(cfg: PEMultiplier) -> str:
    if isinstance(cfg, ImportedConfig):
        return f"imported circuit {cfg.info.name}: {_imported_what(cfg)}"
    model = cfg.model()
    return f"{model!r}" if isinstance(model, DRUM) else f"exact signed {cfg.bits}x{cfg.bits}"


def _context(acfg: ArrayConfig) -> dict[str, object]:
    exact = MultiplierConfig("exact", acfg.bits, None, True)
    return {
        **acfg.widths(),
        "config_id": acfg.config_id,
        "pes": acfg.pes,
        "max_fan_in": acfg.max_fan_in,
        "dual": acfg.dual,
        "mul": _mul_module(acfg.mul),
        "approx_mul": _mul_module(acfg.mul),
        "exact_mul": _mul_module(exact),
        "mul_desc": _mul_desc(acfg.mul) + (f" or exact, per neuron ({_mul_module(exact)})" if acfg.dual else ""),
        "fields": acfg.fields(),
        "iw": acfg.instr_bits,
    }


def _mem(
    module: str, what: str, width: int, depth: int, write: bool, init: str | None, ctx: dict[str, object],
    read_enable: bool = False,
) -> tuple[str, str, dict[str, object]]:
    return (
        f"{module}.v",
        "mem.v.j2",
        {**ctx, "module": module, "what": what, "width": width, "depth": depth, "aw": _aw(depth), "write": write,
         "init": init, "read_enable": read_enable},
    )


def pe_files(acfg: ArrayConfig, weight_store: bool = False) -> list[tuple[str, str, dict[str, object]]]:
    """Files of one PE: top ``pe``, controller, accumulator, clock gate, the neuron local memory, the
    multiplier(s), and the weight local memory -- unless ``weight_store``: the array's PE, which reads its
    weights from its lane of the array's weight store (docs/rtl.md, "Weights stored once")."""
    ctx = {**_context(acfg), "weight_store": weight_store}
    bits = acfg.bits
    files = [
        ("pe.v", "pe.v.j2", ctx),
        ("pe_ctrl.v", "pe_ctrl.v.j2", ctx),
        ("pe_acc.v", "pe_acc.v.j2", ctx),
        ("clock_gate.v", "clock_gate.v.j2", ctx),
        _mem("pe_nlm", "PE neuron local memory (the layer's input vector)", bits, acfg.max_fan_in, True, None, ctx),
    ]
    if not weight_store:
        files.append(_mem("pe_wlm", "PE weight local memory (one output neuron's weights)", bits, acfg.max_fan_in,
                          True, None, ctx))
    muls: list[PEMultiplier] = [acfg.mul]
    if acfg.dual and acfg.mul.design != "exact":
        muls.append(MultiplierConfig("exact", bits, None, True))
    for m in muls:
        files += _mul_files(m)
    return files


def array_files(acfg: ArrayConfig) -> list[tuple[str, str, dict[str, object]]]:
    """Files of the array: the PE's files plus the top ``pe_array``, sequencer, re-quantizer and buffers."""
    ctx = _context(acfg)
    w = acfg.widths()
    return [
        ("pe_array.v", "pe_array.v.j2", ctx),
        ("array_seq.v", "array_seq.v.j2", ctx),
        ("array_requant.v", "array_requant.v.j2", ctx),
        _mem("array_imem", "instruction memory", acfg.instr_bits, acfg.imem_depth, False, "array_imem.hex", ctx),
        _mem("array_wbuf", f"weight store ({acfg.pes} lanes, one per PE; every weight of the network, once)",
             acfg.pes * acfg.bits, acfg.wbuf_depth, False, "array_wbuf.hex", ctx),
        _mem("array_bbuf", f"bias buffer ({acfg.pes} lanes{', mode bit above each bias' if acfg.dual else ''})",
             acfg.pes * int(w["bbw"]), acfg.bbuf_depth, False, "array_bbuf.hex", ctx),
        _mem("array_nbuf", "neuron buffer (input and hidden activations)", acfg.bits, acfg.nbuf_depth, True, None,
             ctx, read_enable=True),
        _mem("array_obuf", "output buffer (output layer accumulators)", acfg.acc_bits, acfg.obuf_depth, True, None,
             ctx),
        *pe_files(acfg, weight_store=True),
    ]


def pe_ports(acfg: ArrayConfig) -> tuple[PortSpec, ...]:
    """Ports of ``pe``."""
    w = acfg.widths()
    bits = acfg.bits
    return (
        PortSpec("clk", "input", 1, False),
        PortSpec("rst", "input", 1, False),
        PortSpec("n_we", "input", 1, False),
        PortSpec("n_addr", "input", w["law"], False),
        PortSpec("n_data", "input", bits, True),
        PortSpec("w_we", "input", 1, False),
        PortSpec("w_addr", "input", w["law"], False),
        PortSpec("w_data", "input", bits, True),
        PortSpec("start", "input", 1, False),
        PortSpec("len", "input", w["lw"], False),
        PortSpec("bias", "input", acfg.bias_bits, True),
        *((PortSpec("mode", "input", 1, False),) if acfg.dual else ()),
        PortSpec("busy", "output", 1, False),
        PortSpec("done", "output", 1, False),
        PortSpec("y", "output", acfg.acc_bits, True),
    )


def array_ports(acfg: ArrayConfig) -> tuple[PortSpec, ...]:
    """Ports of ``pe_array``."""
    w = acfg.widths()
    return (
        PortSpec("clk", "input", 1, False),
        PortSpec("rst", "input", 1, False),
        PortSpec("start", "input", 1, False),
        PortSpec("busy", "output", 1, False),
        PortSpec("done", "output", 1, False),
        PortSpec("host_we", "input", 1, False),
        PortSpec("host_addr", "input", w["naw"], False),
        PortSpec("host_wdata", "input", acfg.bits, False),
        PortSpec("host_rdata", "output", acfg.bits, False),
        PortSpec("host_oaddr", "input", w["oaw"], False),
        PortSpec("host_odata", "output", acfg.acc_bits, False),
    )


def _render(files: list[tuple[str, str, dict[str, object]]], template_dir: Path) -> dict[str, str]:
    env = template_environment(Path(template_dir))
    out: dict[str, str] = {}
    for name, tmpl, ctx in files:
        text = str(ctx["text"]) if tmpl == RAW else env.get_template(tmpl).render(**ctx)
        if name in out and out[name] != text:
            raise ValueError(f"two different modules would be written to {name}: module names collide")
        out[name] = text
    return out


def generate_pe(acfg: ArrayConfig, template_dir: Path = TEMPLATE_DIR) -> dict[str, str]:
    """Render, parse and port-check one PE (top ``pe``).

    >>> sorted(generate_pe(ArrayConfig(MultiplierConfig("exact", 8), max_fan_in=64)))[:3]
    ['clock_gate.v', 'mul_exact_s8.v', 'pe.v']
    """
    entries = pe_files(acfg)
    files = _render(entries, template_dir)
    check_files(_generated_only(files, entries), "pe", pe_ports(acfg), what="design 'pe'")
    return files


def _generated_only(files: dict[str, str], entries: list[tuple[str, str, dict[str, object]]]) -> dict[str, str]:
    """The rendered files without the copied ones (an imported circuit's sources are the user's: several
    modules per file, their own style; the import checked them)."""
    raw = {name for name, tmpl, _ in entries if tmpl == RAW}
    return {n: t for n, t in files.items() if n not in raw}


def generate_array(acfg: ArrayConfig, template_dir: Path = TEMPLATE_DIR) -> dict[str, str]:
    """Render, parse and port-check the array (top ``pe_array``); memory images: :mod:`axhw.rtl.program`."""
    entries = array_files(acfg)
    files = _render(entries, template_dir)
    check_files(_generated_only(files, entries), "pe_array", array_ports(acfg), what="design 'array'")
    return files


# --- registry entries: `axhw rtl generate --design pe|array` with the default geometry ------------------------


def default_config(cfg: MultiplierConfig) -> ArrayConfig:
    """The :class:`ArrayConfig` a plain ``pe`` / ``array`` :class:`MultiplierConfig` stands for."""
    return ArrayConfig(multiplier_config(cfg), **DEFAULT_GEOMETRY)


def _validate(cfg: MultiplierConfig) -> None:
    if cfg.k is not None:
        DESIGNS["drum"].validate(replace(cfg, design="drum"))
    if not cfg.signed:
        raise ValueError(f"design {cfg.design!r} runs signed networks: drop --unsigned")


def _model(cfg: MultiplierConfig) -> SeparableMultiplier:
    return multiplier_config(cfg).model()


register_design(
    "pe",
    DesignSpec(
        top="pe",
        validate=_validate,
        model=_model,
        files=lambda c: pe_files(default_config(c)),
        ports=lambda c: pe_ports(default_config(c)),
    ),
)
register_design(
    "array",
    DesignSpec(
        top="pe_array",
        validate=_validate,
        model=_model,
        files=lambda c: array_files(default_config(c)),
        ports=lambda c: array_ports(default_config(c)),
    ),
)
