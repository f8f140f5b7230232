"""Compile a :class:`~axhw.golden.network.QuantizedNetwork` into the PE array's memory images and instructions.

The array (``pe_array``, :mod:`axhw.rtl.pe`) runs one instruction per step of a chain network: a LAYER
instruction per convolution or fully-connected layer (fully-connected = the 1x1 convolution of a 1x1 map whose
channels are the input vector), a POOL instruction per max pooling; ReLU folds into the step it follows and
flattening is free (maps are stored channel-major, torch's flatten order). The mapping of the loops onto the
PEs (docs/rtl.md): output channels in parallel over the PEs (groups of ``pes``), output pixels in time, the
``fan_in = in_channels * k_h * k_w`` products of one output in time inside each PE; the sequencer gathers each
output pixel's window from the neuron buffer (im2col address generation, zero padding inserted on the fly)
into the PEs' neuron local memories; each PE reads its weights from its lane of the weight store, which holds
every weight of the network once (docs/rtl.md, "Weights stored once").

This module lays a network out in the memories and checks that it fits, with an error naming what does not
fit and the option to change:

* neuron buffer: the input map at 0, then every step's output map one after another (CHW order; they stay
  there after a run, so a testbench can read every layer's output);
* weight store (``array_wbuf``): per layer, per group of ``pes`` output channels, one word per input ``j`` (the flattened
  ``(in_channel, ky, kx)`` index, torch's weight order) holding ``w[g*pes + p][j]`` in lane ``p`` (zero in
  lanes past the layer's last channel);
* bias buffer: one word per group, lane ``p`` = ``{mode, bias}`` of channel ``g*pes + p`` (per-channel
  multiplier modes: ApproxAnn's per-neuron modes, per output channel for convolutions);
* re-quantization per layer: ``s = acc_fmt.frac - out_fmt.frac`` (:func:`axhw.golden.network.requantize`); right
  shifts ``1..acc_bits-1`` with round-half-up, left shifts capped at ``bits`` (any larger left shift of a
  non-zero pre-clamped word saturates just the same).

:func:`write_array` writes the RTL and the images (``array_imem.hex``, ``array_wbuf.hex``,
``array_bbuf.hex``, plus ``array_program.json`` describing the layout) atomically: everything is
generated and checked before the first file is written. :func:`step_cycles` is the sequencer's exact
schedule (cycles per step), checked against the simulated cycle counts.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict

import torch

from axhw.golden.network import IntConv2d, IntFlatten, IntLinear, IntMaxPool2d, IntReLU, QuantizedNetwork
from axhw.rtl.generate import write_files
from axhw.rtl.pe import ArrayConfig, generate_array

__all__ = [
    "ArrayProgram",
    "LayerPlan",
    "NetworkDoesNotFit",
    "compile_network",
    "input_shape_of",
    "load_network",
    "network_and_inputs",
    "step_cycles",
    "write_array",
]

Shape = tuple[int, ...]


class NetworkDoesNotFit(ValueError):
    """The network needs more of some array resource, or an operation the array does not have (the message
    says which)."""


@dataclass(frozen=True)
class LayerPlan:
    """One step of the program: where a layer (or a max pooling) lives in the array.

    Attributes:
        fan_in: products per output (``in_channels * k_h * k_w``; fully-connected: the input size; pool:
            the window size).
        fan_out: output channels (fully-connected: output neurons; pool: channels).
        in_base: neuron buffer address of the input map.
        out_base: neuron buffer address of the outputs (hidden steps) or output buffer address (last).
        w_base, b_base: first weight / bias buffer word (layers).
        shift: re-quantization shift ``acc_frac - out_frac`` (0 for the output layer and pools).
        relu: ReLU after re-quantization (pool: after the maximum).
        last: the output layer (saturated accumulators to the output buffer).
        kind: ``"linear"``, ``"conv2d"`` or ``"maxpool2d"``.
        in_shape, out_shape: ``(C, H, W)`` of the input and output maps (fully-connected: ``(n, 1, 1)``).
        kernel, stride: ``(h, w)``; pad: zero padding ``(top, left, bottom, right)``.
        op: index of the ``forward_int(..., return_all=True)`` output this step's output equals (the
            layer's, or the ReLU's after it).
    """

    fan_in: int
    fan_out: int
    in_base: int
    out_base: int
    w_base: int
    b_base: int
    shift: int
    relu: bool
    last: bool
    kind: str = "linear"
    in_shape: Shape = (0, 1, 1)
    out_shape: Shape = (0, 1, 1)
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    op: int = -1

    @property
    def in_size(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_size(self) -> int:
        return math.prod(self.out_shape)

    @property
    def pixels(self) -> int:
        """Output pixels per channel."""
        return self.out_shape[1] * self.out_shape[2]

    @property
    def macs(self) -> int:
        """Products of one inference (0 for pools)."""
        return 0 if self.kind == "maxpool2d" else self.fan_out * self.pixels * self.fan_in


@dataclass
class ArrayProgram:
    """A network compiled for one :class:`ArrayConfig`: layout plus the memory image texts."""

    config: ArrayConfig
    layers: list[LayerPlan]
    images: dict[str, str]
    input_shape: Shape = field(default=())

    @property
    def n_inputs(self) -> int:
        return self.layers[0].in_size

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].out_size

    @property
    def hidden_span(self) -> tuple[int, int]:
        """Neuron buffer range ``[lo, hi)`` holding every hidden step's outputs."""
        hidden = [p for p in self.layers if not p.last]
        return self.n_inputs, max((p.out_base + p.out_size for p in hidden), default=self.n_inputs)

    def cycles(self) -> list[int]:
        """Busy cycles of each step for one inference (:func:`step_cycles`); the HALT fetch adds one more."""
        return [step_cycles(self.config, p) for p in self.layers]

    @property
    def cycles_per_inference(self) -> int:
        return sum(self.cycles()) + 1

    def describe(self) -> dict[str, object]:
        return {"config_id": self.config.config_id, "input_shape": list(self.input_shape),
                "layers": [asdict(p) for p in self.layers]}


def step_cycles(acfg: ArrayConfig, plan: LayerPlan) -> int:
    """The sequencer's busy cycles for one step (``rtl/array_seq.v.j2``), one FETCH included.

    LAYER, per group of ``pes`` channels, per output pixel: WSTART (1), LOADN (``fan_in``, the PEs computing
    one element behind, their weights read from the weight store), WAIT (2: the PEs' last product and done
    cycle), WRITE (one per valid lane); single-pixel layers after the first group skip the gather: RUN
    (``fan_in``), WAIT (2), WRITE. POOL, per output: WSTART, the window, PWRITE.
    """
    f, pix = plan.fan_in, plan.pixels
    if plan.kind == "maxpool2d":
        return 1 + plan.fan_out * pix * (f + 2)
    total = 1
    for g in range(-(-plan.fan_out // acfg.pes)):
        lanes = min(acfg.pes, plan.fan_out - g * acfg.pes)
        total += f + 2 + lanes if pix == 1 and g > 0 else pix * (1 + f + 2 + lanes)
    return total


def load_network(path: str | os.PathLike[str]) -> QuantizedNetwork:
    """A :class:`QuantizedNetwork` file (``QuantizedNetwork.save``) or a training checkpoint. A checkpoint
    without an integer network (trained with float parts, ``--keep-float``) is refused with the integer
    export's own one line naming those parts: the array has no float unit."""
    try:
        return QuantizedNetwork.load(path)
    except ValueError:
        from axhw.training.trainer import load_checkpoint, quantized_from_checkpoint

        try:
            ck = load_checkpoint(path)
        except ValueError as exc:
            raise ValueError(f"{path}: neither a QuantizedNetwork file nor a training checkpoint ({exc})") from exc
        return quantized_from_checkpoint(ck)


def network_and_inputs(path: str | os.PathLike[str], samples: int) -> tuple[QuantizedNetwork, torch.Tensor]:
    """A trained network and the first ``samples`` test inputs of its data set, as input codes shaped as the
    network takes them: a training checkpoint (its own data), or a :class:`QuantizedNetwork` file whose
    ``meta`` names a data set."""
    from axhw.training.trainer import integer_test_inputs, load_checkpoint

    try:
        ck = load_checkpoint(path)
    except ValueError:
        ck = None
    if ck is None:
        qnet = load_network(path)
        dataset = qnet.meta.get("dataset")
        if not isinstance(dataset, str):
            raise ValueError(f"{path}: a QuantizedNetwork without a data set in its meta: use a training checkpoint")
        from axhw import data

        x = data.load(dataset, seed=int(qnet.meta.get("seed", 0)), test_limit=samples).x_test
        shape = input_shape_of(qnet)
        if shape is None:
            raise ValueError(f"{path}: cannot tell the network's input shape")
        return qnet, qnet.quantize_input(x.reshape(x.shape[0], *shape))[:samples]
    qnet, x = integer_test_inputs(ck)
    return qnet, x[:samples]


def input_shape_of(qnet: QuantizedNetwork) -> Shape | None:
    """The input shape a network implies: flat for an MLP, ``(1, 28, 28)`` for the MNIST CNN application;
    None when it cannot be told (a convolution first, on a data set of unknown image size)."""
    first = next((op for op in qnet.ops if isinstance(op, IntLinear | IntMaxPool2d)), None)
    if isinstance(first, IntLinear) and not isinstance(first, IntConv2d):
        return (int(first.weight.shape[1]),)
    if qnet.meta.get("dataset") in ("mnist_cnn", "mnist"):
        return (1, 28, 28)
    return None


def _hex(value: int, width: int) -> str:
    return f"{value & ((1 << width) - 1):0{(width + 3) // 4}x}"


def _pair(v: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    if isinstance(v, tuple | list):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _pad4(conv: IntConv2d) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a convolution's zero padding."""
    p = conv.padding
    if isinstance(p, tuple | list) and len(p) == 4:
        left, right, top, bottom = (int(v) for v in p)  # F.pad order
        return top, left, bottom, right
    ph, pw = _pair(p)
    return ph, pw, ph, pw


def _refuse(i: int, what: str) -> NetworkDoesNotFit:
    return NetworkDoesNotFit(f"op {i} ({what}) does not fit the PE array, which runs chains of convolution, "
                             "fully-connected, ReLU, max-pooling and flatten ops")


class _Step(TypedDict):
    """A planned step of :func:`_plan_steps`: the fields of its :class:`LayerPlan` that the plan decides."""

    kind: str
    layer: IntLinear | None  # None: a max pooling
    in_shape: Shape
    out_shape: Shape
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]
    relu: bool
    op: int
    fan_in: int
    fan_out: int
    last: bool


def _plan_steps(qnet: QuantizedNetwork, input_shape: Shape) -> list[_Step]:
    """The chain as array steps (mutable dicts, addresses not yet assigned); raises on what does not fit."""
    ops = qnet.ops
    layer_idx = [i for i, op in enumerate(ops) if isinstance(op, IntLinear)]
    if not layer_idx:
        raise NetworkDoesNotFit("the network has no convolution or fully-connected layer")
    out_idx = layer_idx[-1]
    steps: list[_Step] = []
    shape: Shape = tuple(input_shape)
    unsupported = {"avgpool2d": "avgpool2d: average pooling needs a divider, the array pools by maximum",
                   "add": "add: residual addition", "cat": "cat: concatenation"}
    for i, op in enumerate(ops):
        if op.kind in unsupported:
            raise _refuse(i, unsupported[op.kind])
        if qnet.op_inputs(i) != (i,):
            raise _refuse(i, f"{op.kind} reading values {qnet.op_inputs(i)}, a skip connection")
        if i > out_idx:
            raise NetworkDoesNotFit(f"op {i} ({op.kind}) follows the output layer (op {out_idx}); the array's "
                                    "outputs are the last layer's accumulators")
        if isinstance(op, IntConv2d):
            if len(shape) != 3:
                raise _refuse(i, f"conv2d on a flat input of shape {shape}")
            if op.groups != 1 or _pair(op.dilation) != (1, 1) or op.padding_mode != "zeros":
                raise _refuse(i, f"conv2d with groups={op.groups}, dilation={op.dilation}, "
                                 f"padding_mode={op.padding_mode!r}; the array convolves with groups=1, dilation=1, "
                                 "zero padding")
            cout, cin, kh, kw = (int(v) for v in op.weight.shape)
            c, h, w = shape
            if cin != c:
                raise _refuse(i, f"conv2d expecting {cin} input channels on a {c}-channel map")
            pt, pl, pb, pr = _pad4(op)
            if pt >= kh or pb >= kh or pl >= kw or pr >= kw:
                raise _refuse(i, f"conv2d with padding {(pt, pl, pb, pr)} not smaller than its {kh}x{kw} kernel")
            sh, sw = _pair(op.stride)
            ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
            if ho < 1 or wo < 1:
                raise _refuse(i, f"conv2d with a {kh}x{kw} kernel on a {h}x{w} map")
            steps.append({"kind": "conv2d", "layer": op, "in_shape": shape, "out_shape": (cout, ho, wo),
                          "kernel": (kh, kw), "stride": (sh, sw), "pad": (pt, pl, pb, pr), "relu": False, "op": i,
                          "fan_in": cin * kh * kw, "fan_out": cout, "last": i == out_idx})
            shape = (cout, ho, wo)
        elif isinstance(op, IntLinear):
            if op.kind != "linear":
                raise _refuse(i, op.kind)
            if len(shape) != 1:
                raise _refuse(i, f"linear on a map of shape {shape} without flattening")
            fan_out, fan_in = (int(v) for v in op.weight.shape)
            if shape[0] != fan_in:
                raise _refuse(i, f"linear expecting {fan_in} inputs on {shape[0]} values")
            steps.append({"kind": "linear", "layer": op, "in_shape": (fan_in, 1, 1), "out_shape": (fan_out, 1, 1),
                          "kernel": (1, 1), "stride": (1, 1), "pad": (0, 0, 0, 0), "relu": False, "op": i,
                          "fan_in": fan_in, "fan_out": fan_out, "last": i == out_idx})
            shape = (fan_out,)
        elif isinstance(op, IntReLU):
            if not steps or steps[-1]["last"]:
                raise _refuse(i, "relu on the network input")
            # ReLU commutes with flattening; after a layer it follows re-quantization (both monotone, keep 0)
            steps[-1]["relu"] = True
            steps[-1]["op"] = i
        elif isinstance(op, IntMaxPool2d):
            if len(shape) != 3:
                raise _refuse(i, f"maxpool2d on a flat input of shape {shape}")
            (kh, kw), (sh, sw) = _pair(op.kernel), _pair(op.stride if op.stride is not None else op.kernel)
            c, h, w = shape
            ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
            if ho < 1 or wo < 1:
                raise _refuse(i, f"maxpool2d with a {kh}x{kw} window on a {h}x{w} map")
            steps.append({"kind": "maxpool2d", "layer": None, "in_shape": shape, "out_shape": (c, ho, wo),
                          "kernel": (kh, kw), "stride": (sh, sw), "pad": (0, 0, 0, 0), "relu": False, "op": i,
                          "fan_in": kh * kw, "fan_out": c, "last": False})
            shape = (c, ho, wo)
        elif isinstance(op, IntFlatten):
            shape = (math.prod(shape),)
        else:
            raise _refuse(i, op.kind)
    return steps


def _need(what: int, have: int, resource: str, option: str) -> None:
    if what > have:
        raise NetworkDoesNotFit(f"network needs {what} {resource} but the array has {have}: regenerate with {option}")


def _pow2_at_least(n: int) -> int:
    return 1 << max(1, (n - 1).bit_length())


def _check_formats(acfg: ArrayConfig, li: int, layer: IntLinear) -> int:
    """Word formats against the array's; returns the re-quantization shift (0 for the output layer)."""
    bits = acfg.bits
    for name, fmt in (("activation", layer.act_fmt), ("weight", layer.weight_fmt)):
        if fmt.bits != bits:
            raise NetworkDoesNotFit(f"layer {li}: {name} words have {fmt.bits} bits, the array {bits}: "
                                    f"regenerate with --bits {fmt.bits}")
    if layer.acc_fmt.bits != acfg.acc_bits:
        raise NetworkDoesNotFit(f"layer {li}: accumulator has {layer.acc_fmt.bits} bits, the array "
                                f"{acfg.acc_bits}: regenerate with acc_bits={layer.acc_fmt.bits}")
    assert layer.bias_fmt is not None
    _need(layer.bias_fmt.bits, acfg.bias_bits, "bias bits", f"bias_bits >= {layer.bias_fmt.bits}")
    if layer.out_fmt is None:
        return 0
    if layer.out_fmt.bits != bits:
        raise NetworkDoesNotFit(f"layer {li}: output activations have {layer.out_fmt.bits} bits, the array {bits}")
    shift = layer.acc_fmt.frac - layer.out_fmt.frac
    if shift >= acfg.acc_bits:
        raise NetworkDoesNotFit(f"layer {li}: re-quantization shift {shift} >= acc_bits={acfg.acc_bits}")
    return shift


def compile_network(
    acfg: ArrayConfig,
    qnet: QuantizedNetwork,
    modes: list[torch.Tensor] | None = None,
    input_shape: Shape | None = None,
) -> ArrayProgram:
    """Lay ``qnet`` out in ``acfg``'s memories and encode the instruction stream.

    Args:
        modes: per layer (convolution or fully-connected), a bool tensor over output channels / neurons:
            True = approximate multiplier, False = exact (needs ``acfg.dual``). Default: all approximate.
        input_shape: ``(C, H, W)`` of the input maps, or ``(features,)``; default :func:`input_shape_of`.

    Raises:
        NetworkDoesNotFit: an operation the array does not have, formats that differ from the array's
            words, or a memory that is too small (the message names the ``--option`` /
            :class:`ArrayConfig` field to raise).
    """
    if input_shape is None:
        input_shape = input_shape_of(qnet)
        if input_shape is None:
            raise ValueError("the network starts with a convolution: give its input shape (C, H, W)")
    steps = _plan_steps(qnet, tuple(input_shape))
    n_layers = sum(1 for s in steps if s["layer"] is not None)
    if modes is not None and not acfg.dual:
        raise ValueError("per-neuron multiplier modes need an array generated with dual=True (--dual)")
    if modes is not None and len(modes) != n_layers:
        raise ValueError(f"modes has {len(modes)} entries, the network {n_layers} layers")
    pes, bits = acfg.pes, acfg.bits
    w = acfg.widths()
    plans: list[LayerPlan] = []
    words: list[str] = []
    bwords: list[str] = []
    in_base = 0
    nb_next = math.prod(input_shape)
    li = -1
    for step in steps:
        layer = step["layer"]
        fan_in, fan_out = int(step["fan_in"]), int(step["fan_out"])
        last = bool(step["last"])
        out_size = math.prod(step["out_shape"])
        shift, w_base, b_base = 0, len(words), len(bwords)
        if isinstance(layer, IntLinear):
            li += 1
            shift = _check_formats(acfg, li, layer)
            _need(fan_in, acfg.max_fan_in, f"products per output (fan-in) in layer {li}",
                  f"--max-fan-in {_pow2_at_least(fan_in)}")
            wt = layer.weight.to(torch.int64).reshape(fan_out, fan_in).tolist()
            bias = layer.bias.to(torch.int64).tolist()
            mode = [True] * fan_out if modes is None else [bool(m) for m in modes[li].tolist()]
            for g in range(-(-fan_out // pes)):
                rows = [g * pes + p for p in range(pes)]
                for j in range(fan_in):
                    word = 0
                    for p, r in enumerate(rows):
                        if r < fan_out:
                            word |= (wt[r][j] & ((1 << bits) - 1)) << (p * bits)
                    words.append(_hex(word, pes * bits))
                bword = 0
                for p, r in enumerate(rows):
                    if r < fan_out:
                        lane = (bias[r] & ((1 << acfg.bias_bits) - 1)) | (int(mode[r] and acfg.dual) << acfg.bias_bits)
                        bword |= lane << (p * w["bbw"])
                bwords.append(_hex(bword, pes * w["bbw"]))
        else:
            _need(fan_in, acfg.max_fan_in, f"pooling window elements in step {len(plans)}",
                  f"--max-fan-in {_pow2_at_least(fan_in)}")
        if last:
            _need(out_size, acfg.obuf_depth, "output buffer words", f"--obuf-depth {_pow2_at_least(out_size)}")
            out_base = 0
        else:
            out_base = nb_next
            nb_next += out_size
        plans.append(LayerPlan(
            fan_in, fan_out, in_base, out_base, w_base, b_base, shift, bool(step["relu"]), last,
            kind=str(step["kind"]), in_shape=tuple(step["in_shape"]),
            out_shape=tuple(step["out_shape"]), kernel=step["kernel"], stride=step["stride"],
            pad=step["pad"], op=int(step["op"]),
        ))
        in_base = out_base
    _need(nb_next, acfg.nbuf_depth, "neuron buffer words", f"--nbuf-depth {_pow2_at_least(nb_next)}")
    _need(len(words), acfg.wbuf_depth, "weight buffer words", f"--wbuf-depth {_pow2_at_least(len(words))}")
    _need(len(bwords), acfg.bbuf_depth, "bias buffer words", f"--bbuf-depth {_pow2_at_least(len(bwords))}")
    _need(len(plans) + 1, acfg.imem_depth, "instruction words", f"--imem-depth {_pow2_at_least(len(plans) + 1)}")
    instrs = [_hex(encode(acfg, p), acfg.instr_bits) for p in plans] + [_hex(0, acfg.instr_bits)]
    images = {
        "array_imem.hex": "\n".join(instrs) + "\n",
        "array_wbuf.hex": "\n".join(words or ["0"]) + "\n",
        "array_bbuf.hex": "\n".join(bwords or ["0"]) + "\n",
    }
    program = ArrayProgram(acfg, plans, images, tuple(input_shape))
    images["array_program.json"] = json.dumps(program.describe(), indent=1) + "\n"
    return program


def encode(acfg: ArrayConfig, plan: LayerPlan) -> int:
    """One instruction word (fields from :meth:`ArrayConfig.fields`)."""
    left = plan.shift < 0
    amt = min(-plan.shift, acfg.bits) if left else plan.shift
    _, h, w = plan.in_shape
    _, ho, wo = plan.out_shape
    values = {
        "op": 2 if plan.kind == "maxpool2d" else 1,
        "last": int(plan.last),
        "relu": int(plan.relu),
        "left": int(left),
        "amt": amt,
        "fan_in": plan.fan_in,
        "fan_out": plan.fan_out,
        "in_base": plan.in_base,
        "out_base": plan.out_base,
        "w_base": plan.w_base,
        "b_base": plan.b_base,
        "k_h": plan.kernel[0],
        "k_w": plan.kernel[1],
        "in_h": h,
        "in_w": w,
        "in_hw": h * w,
        "out_h": ho,
        "out_w": wo,
        "out_hw": ho * wo,
        "st_h": plan.stride[0],
        "st_w": plan.stride[1],
        "pad_t": plan.pad[0],
        "pad_l": plan.pad[1],
        "row_step": plan.stride[0] * w,
        "org_row": plan.pad[0] * w,
    }
    word = 0
    for f in acfg.fields():
        v = values[f.name]
        if not 0 <= v < (1 << f.width):
            raise NetworkDoesNotFit(f"instruction field {f.name}={v} does not fit its {f.width} bits")
        word |= v << f.lo
    return word


def write_array(
    acfg: ArrayConfig,
    out_dir: str | os.PathLike[str],
    qnet: QuantizedNetwork | None = None,
    modes: list[torch.Tensor] | None = None,
    input_shape: Shape | None = None,
) -> list[Path]:
    """Generate the array's RTL (and, with ``qnet``, its memory images) and write them atomically.

    Nothing is written unless the RTL parses, the ports check out and the network fits.
    """
    files = generate_array(acfg)
    if qnet is not None:
        files.update(compile_network(acfg, qnet, modes, input_shape).images)
    return write_files(files, out_dir)
