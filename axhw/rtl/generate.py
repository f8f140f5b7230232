"""RTL generation: render the Jinja2 templates in ``rtl/`` into Verilog-2005 files for one multiplier.

One :class:`MultiplierConfig` renders the templates, parametrizes the cocotb builds and configures the
Python model (:meth:`MultiplierConfig.model`), so the three cannot drift (style guide, "Code generation").
Designs are pluggable through :data:`DESIGNS` (``drum``, ``exact``; the PE and array generators register
themselves the same way).

Every generated file is parsed with pyverilog before anything is written, and the top module's ports are
checked against the request: a template bug surfaces as a :class:`GeneratedRTLError` here, not as a
confusing simulator failure later.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import torch

from axhw.arith.multipliers import DRUM, Exact, SeparableMultiplier
from axhw.common.paths import resource_dir

if TYPE_CHECKING:  # pyverilog is imported where used (slow to import) and ships no type information
    from pyverilog.vparser.ast import Source
    from pyverilog.vparser.parser import VerilogParser

__all__ = [
    "DESIGNS",
    "MAX_BITS",
    "MIN_BITS",
    "TEMPLATE_DIR",
    "DesignSpec",
    "GeneratedRTLError",
    "MultiplierConfig",
    "PortSpec",
    "check_files",
    "check_ports",
    "drum_files",
    "exact_files",
    "generate",
    "parse_verilog",
    "register_design",
    "render",
    "write",
    "write_files",
]

#: Operand widths the templates support (docs/training.md, "Number formats": 8 and 16 bits in use, 32 for
#: accumulators).
MIN_BITS = 2
MAX_BITS = 32
#: ``rtl/`` (the repository's, or the wheel's copy) holds the ``.v.j2`` templates.
TEMPLATE_DIR = resource_dir("rtl")


class GeneratedRTLError(RuntimeError):
    """A rendered file does not parse or its top module's ports differ from the request (a template bug)."""


@dataclass(frozen=True)
class PortSpec:
    """Expected port of a generated top module (checked against the pyverilog AST).

    Attributes:
        name: port name.
        direction: ``"input"`` or ``"output"``.
        width: bit width.
        signed: whether the port is declared ``signed``.
    """

    name: str
    direction: str
    width: int
    signed: bool


@dataclass(frozen=True)
class MultiplierConfig:
    """What to generate: one multiplier configuration.

    Attributes:
        design: registry key in :data:`DESIGNS` (``"drum"`` or ``"exact"``).
        bits: operand width, ``MIN_BITS..MAX_BITS``; the product ``p`` has ``2 * bits`` bits.
        k: DRUM segment width, ``1..bits`` (``k = bits`` is exact, ``k = 1`` a power-of-two multiplier,
            Hashemi et al. 2015). Ignored (must be ``None``) for ``exact``.
        signed: two's-complement operands (sign-magnitude around the DRUM core) or unsigned.
    """

    design: str
    bits: int = 8
    k: int | None = None
    signed: bool = True

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(
                f"unknown design {self.design!r}: valid designs are {', '.join(DESIGNS)}"
            )
        if (
            not isinstance(self.bits, int)
            or isinstance(self.bits, bool)
            or not MIN_BITS <= self.bits <= MAX_BITS
        ):
            raise ValueError(f"bits={self.bits!r} out of range: valid range is {MIN_BITS}..{MAX_BITS}")
        if not isinstance(self.signed, bool):
            raise ValueError(f"signed={self.signed!r} must be a bool")
        DESIGNS[self.design].validate(self)

    @property
    def top(self) -> str:
        """Top module name (``drum_mul`` / ``exact_mul``)."""
        return DESIGNS[self.design].top

    @property
    def config_id(self) -> str:
        """Short unique name, e.g. ``drum_k3_s8``: used for build directories and generated headers."""
        kpart = f"_k{self.k}" if self.k is not None else ""
        return f"{self.design}{kpart}_{'s' if self.signed else 'u'}{self.bits}"

    def model(self) -> SeparableMultiplier:
        """The bit-exact Python reference (:mod:`axhw.arith.multipliers`) this RTL must match."""
        return DESIGNS[self.design].model(self)

    def ports(self) -> tuple[PortSpec, ...]:
        """The top module's ports: ``a``, ``b`` (``bits``) in, ``p`` (``2 * bits``) out for the multipliers;
        designs with other ports (the PE, the array) supply :attr:`DesignSpec.ports`."""
        spec = DESIGNS[self.design]
        if spec.ports is not None:
            return spec.ports(self)
        return (
            PortSpec("a", "input", self.bits, self.signed),
            PortSpec("b", "input", self.bits, self.signed),
            PortSpec("p", "output", 2 * self.bits, self.signed),
        )

    def copy(self, **changes: Any) -> MultiplierConfig:
        """A validated copy with some fields changed (sweeps: ``cfg.copy(k=4)``)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class DesignSpec:
    """A registered design: how to validate, model and render it.

    Attributes:
        top: top module name.
        validate: raises ``ValueError`` for configurations the design does not support.
        model: the Python reference multiplier.
        files: ``cfg -> [(output filename, template name, template context)]``.
        ports: the top's ports, when they are not the multiplier's ``a``, ``b``, ``p``.
    """

    top: str
    validate: Callable[[MultiplierConfig], None]
    model: Callable[[MultiplierConfig], SeparableMultiplier]
    files: Callable[[MultiplierConfig], list[tuple[str, str, dict[str, object]]]]
    ports: Callable[[MultiplierConfig], tuple[PortSpec, ...]] | None = None


#: Design registry; :func:`register_design` adds to it.
DESIGNS: dict[str, DesignSpec] = {}


def register_design(name: str, spec: DesignSpec) -> None:
    """Register a design under ``name`` (the PE / array generators plug in here)."""
    if name in DESIGNS:
        raise ValueError(f"design {name!r} is already registered")
    DESIGNS[name] = spec


def _common_context(cfg: MultiplierConfig) -> dict[str, object]:
    return {"bits": cfg.bits, "pbits": 2 * cfg.bits, "signed": cfg.signed, "config_id": cfg.config_id}


# --- exact ---------------------------------------------------------------------------------------------------


def _validate_exact(cfg: MultiplierConfig) -> None:
    if cfg.k is not None:
        raise ValueError(f"k={cfg.k!r} is meaningless for design 'exact': leave it unset (None)")


def exact_files(cfg: MultiplierConfig, top: str = "exact_mul") -> list[tuple[str, str, dict[str, object]]]:
    """(file name, template, context) of the exact multiplier's Verilog, its module named ``top``."""
    # `top` renames the module for use inside the PE / array, where several multipliers may coexist.
    return [(f"{top}.v", "exact_mul.v.j2", {**_common_context(cfg), "top_module": top})]


# --- DRUM ----------------------------------------------------------------------------------------------------


def _validate_drum(cfg: MultiplierConfig) -> None:
    if not isinstance(cfg.k, int) or isinstance(cfg.k, bool) or not 1 <= cfg.k <= cfg.bits:
        raise ValueError(f"k={cfg.k!r} out of range for design 'drum': valid range is 1..bits={cfg.bits}")


def _drum_saturates(cfg: MultiplierConfig) -> bool:
    """Whether the (min, min) product leaves the signed product range, asked of the model itself."""
    model = cfg.model()
    if not cfg.signed:
        return False
    lo = model.operand_range[0]
    t_min = int(model.transform(torch.tensor([lo]))[0])
    return t_min * t_min > model.product_range[1]


def drum_files(cfg: MultiplierConfig, top: str = "drum_mul") -> list[tuple[str, str, dict[str, object]]]:
    """(file name, template, context) of each of DRUM-k's Verilog files, the top module named ``top``."""
    # `top` renames the top module for use inside the PE / array (the sub-modules already carry w/k suffixes).
    assert cfg.k is not None
    bits, k = cfg.bits, cfg.k
    pbits = 2 * bits
    # The magnitude has `bits` bits for both signednesses (|-2**(bits-1)| = 2**(bits-1)); k >= bits is exact.
    exact_core = k >= bits
    high = bits - k  # magnitude bits above the segment, where the leading one may sit
    tbits = max(1, high.bit_length())  # t = pos - k + 1 in 0..high
    sbits = (2 * high).bit_length()  # ta + tb in 0..2*high
    suffix = f"w{bits}_k{k}"
    ctx = {
        **_common_context(cfg),
        "k": k,
        "exact_core": exact_core,
        "high": high,
        "tbits": tbits,
        "sbits": sbits,
        "saturate": _drum_saturates(cfg),
        "pmax_literal": f"{pbits}'h{(1 << (pbits - 1)) - 1:x}",
        "lod_module": f"drum_lod_{suffix}",
        "enc_module": f"drum_enc_{suffix}",
        "seg_module": f"drum_seg_{suffix}",
        "shift_module": f"drum_shift_w{pbits}_s{sbits}",
        "top_module": top,
    }
    files: list[tuple[str, str, dict[str, object]]] = [(f"{top}.v", "drum_mul.v.j2", ctx)]
    if not exact_core:
        # Bit i of t collects the one-hot lines j whose t = j + 1 has bit i set (MSB-first literal).
        masks = [
            "".join("1" if ((j + 1) >> i) & 1 else "0" for j in reversed(range(high))) for i in range(tbits)
        ]
        for key, template, extra in (
            ("lod_module", "drum_lod.v.j2", {}),
            ("enc_module", "drum_enc.v.j2", {"enc_masks": masks}),
            ("seg_module", "drum_seg.v.j2", {}),
            ("shift_module", "drum_shift.v.j2", {}),
        ):
            name = str(ctx[key])
            files.append((f"{name}.v", template, {**ctx, **extra, "module": name}))
    return files


register_design(
    "drum",
    DesignSpec(
        top="drum_mul",
        validate=_validate_drum,
        model=lambda c: DRUM(int(c.k or 0), c.bits, c.signed),
        files=drum_files,
    ),
)
register_design(
    "exact",
    DesignSpec(
        top="exact_mul", validate=_validate_exact, model=lambda c: Exact(c.bits, c.signed), files=exact_files
    ),
)


# --- rendering, parsing, writing -----------------------------------------------------------------------------


@cache
def template_environment(template_dir: Path) -> jinja2.Environment:
    # StrictUndefined: a misspelt context key is an error, not an empty string in the Verilog.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def render(cfg: MultiplierConfig, template_dir: Path = TEMPLATE_DIR) -> dict[str, str]:
    """Render the design's templates without checking them (see :func:`generate`)."""
    env = template_environment(Path(template_dir))
    return {name: env.get_template(tmpl).render(**ctx) for name, tmpl, ctx in DESIGNS[cfg.design].files(cfg)}


@cache
def _parser() -> VerilogParser:
    """One pyverilog parser per process: building it costs ~0.6 s even with a cached table."""
    from pyverilog.vparser.parser import VerilogParser

    # yacc writes parsetab.py into `outputdir` (default: the CWD); a private directory keeps the CWD clean,
    # and holding the TemporaryDirectory on the parser removes it when the process exits (its finalizer).
    tables = tempfile.TemporaryDirectory(prefix="axhw-pyverilog-")
    parser = VerilogParser(outputdir=tables.name, debug=False)
    parser._axhw_tables = tables
    return parser


def parse_verilog(text: str, filename: str = "<generated>") -> Source:
    """Parse Verilog text with pyverilog and return the AST (``pyverilog.vparser.ast.Source``).

    The text goes to pyverilog's parser directly, skipping ``pyverilog.vparser.parser.parse``'s
    ``iverilog -E`` preprocessing step: generated files use no macros or includes, and this way generation
    needs no simulator installed and writes nothing into the CWD.

    Raises:
        GeneratedRTLError: the text does not parse.
    """
    from pyverilog.vparser.parser import ParseError

    parser = _parser()
    parser.lexer.lexer.lineno = 1  # the parser is reused: restart line numbers
    try:
        return parser.parse(text)
    except (ParseError, SyntaxError) as exc:
        raise GeneratedRTLError(f"generated file {filename} does not parse as Verilog: {exc}") from exc


def _int_const(node: object) -> int:
    from pyverilog.vparser.ast import IntConst

    if not isinstance(node, IntConst):
        raise GeneratedRTLError(f"port width bound {node!r} is not a literal (parameters must be rendered)")
    return int(node.value.split("'")[-1].lstrip("dD"))


def check_ports(ast: Source, top: str, expected: tuple[PortSpec, ...], filename: str = "<generated>") -> None:
    """Check that module ``top`` in ``ast`` has exactly the ``expected`` ports (names, order, directions,
    widths, signedness).

    Raises:
        GeneratedRTLError: the module is missing or a port differs.
    """
    from pyverilog.vparser.ast import Input, Ioport, ModuleDef, Output

    modules = [d for d in ast.description.definitions if isinstance(d, ModuleDef)]
    top_defs = [m for m in modules if m.name == top]
    if len(top_defs) != 1:
        raise GeneratedRTLError(f"{filename}: expected one module {top!r}, found {[m.name for m in modules]}")
    found: list[PortSpec] = []
    for port in top_defs[0].portlist.ports:
        decl = port.first if isinstance(port, Ioport) else port
        if not isinstance(decl, Input | Output):
            raise GeneratedRTLError(f"{filename}: port {decl!r} of {top} is neither input nor output")
        width = 1 if decl.width is None else _int_const(decl.width.msb) - _int_const(decl.width.lsb) + 1
        direction = "input" if isinstance(decl, Input) else "output"
        found.append(PortSpec(decl.name, direction, width, bool(decl.signed)))
    if tuple(found) != tuple(expected):
        raise GeneratedRTLError(f"{filename}: ports of {top} are {found}, expected {list(expected)}")


def generate(cfg: MultiplierConfig, template_dir: Path = TEMPLATE_DIR) -> dict[str, str]:
    """Render, parse and port-check the Verilog for ``cfg``.

    Returns:
        ``{filename: verilog text}``, one module per file, the top module in ``f"{cfg.top}.v"``.

    Raises:
        GeneratedRTLError: a rendered file does not parse or the top's ports differ from ``cfg.ports()``.

    >>> sorted(generate(MultiplierConfig("drum", bits=8, k=3)))
    ['drum_enc_w8_k3.v', 'drum_lod_w8_k3.v', 'drum_mul.v', 'drum_seg_w8_k3.v', 'drum_shift_w16_s4.v']
    """
    files = render(cfg, template_dir)
    check_files(files, cfg.top, cfg.ports(), what=f"design {cfg.design!r}")
    return files


def check_files(files: dict[str, str], top: str, ports: tuple[PortSpec, ...], what: str = "design") -> None:
    """Parse every generated file, require one module per file named after it, and check ``top``'s ports.

    Shared by :func:`generate` and the PE / array generator (:mod:`axhw.rtl.pe`), whose configurations
    carry more than a :class:`MultiplierConfig`.

    Raises:
        GeneratedRTLError: a file does not parse, holds other modules, or ``top`` is missing or differs.
    """
    from pyverilog.vparser.ast import ModuleDef

    for name, text in files.items():
        if not name.endswith(".v"):
            continue  # memory images and instruction streams travel with the RTL but are not Verilog
        ast = parse_verilog(text, name)
        modules = [d.name for d in ast.description.definitions if isinstance(d, ModuleDef)]
        if modules != [name.removesuffix(".v")]:
            raise GeneratedRTLError(f"{name} must hold exactly one module named after the file, found {modules}")
        if name == f"{top}.v":
            check_ports(ast, top, ports, name)
    if f"{top}.v" not in files:
        raise GeneratedRTLError(f"{what} rendered no {top}.v (files: {sorted(files)})")


def write(
    cfg: MultiplierConfig, out_dir: str | os.PathLike[str], template_dir: Path = TEMPLATE_DIR
) -> list[Path]:
    """Generate ``cfg`` and write its files into ``out_dir`` (created if needed).

    Everything is rendered and checked, then written into a temporary directory beside ``out_dir``, and only
    then moved into place with atomic renames, so an error leaves no half-written file behind. Files whose
    content is unchanged are left untouched: their timestamps stay, so simulator builds stay cached.

    Returns:
        The paths of all generated files (written or already up to date).
    """
    return write_files(generate(cfg, template_dir), out_dir)


def write_files(files: dict[str, str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write already generated and checked ``files`` into ``out_dir`` (see :func:`write`): staged in a
    temporary directory inside ``out_dir``, then moved with atomic renames; unchanged files stay untouched."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory(prefix=".axhw-rtl-", dir=out) as tmp:
        staged = []
        for name, text in files.items():
            dest = out / name
            paths.append(dest)
            if dest.is_file() and dest.read_text() == text:
                continue
            tmp_path = Path(tmp) / name
            tmp_path.write_text(text)
            staged.append((tmp_path, dest))
        for tmp_path, dest in staged:
            os.replace(tmp_path, dest)
    return paths
