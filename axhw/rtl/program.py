"""Compile a :class:`~axhw.quant.QuantizedNetwork` MLP into the PE array's memory images and instructions.

The array (``pe_array``, :mod:`axhw.rtl.pe`) runs one FC instruction per layer. This module lays a network
out in its memories and checks that it fits, with an error naming the option to change when it does not:

* neuron buffer: the input vector at 0, then each hidden layer's activations one after another (they stay
  there after a run, so a testbench can read every layer's output);
* weight buffer: per layer, per group of ``pes`` output neurons, one word per input ``j`` holding
  ``w[g*pes + p][j]`` in lane ``p`` (zero in lanes past the layer's last neuron);
* bias buffer: one word per group, lane ``p`` = ``{mode, bias}`` of neuron ``g*pes + p``;
* re-quantization per layer: ``s = acc_fmt.frac - out_fmt.frac`` (:func:`axhw.quant.requantize`); right
  shifts ``1..acc_bits-1`` with round-half-up, left shifts capped at ``bits`` (any larger left shift of a
  non-zero pre-clamped word saturates just the same).

:func:`write_array` writes the RTL and the images (``array_imem.hex``, ``array_wbuf.hex``,
``array_bbuf.hex``, plus ``array_program.json`` describing the layout) atomically: everything is
generated and checked before the first file is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from axhw.quant import IntFlatten, IntLinear, IntReLU, QuantizedNetwork
from axhw.rtl.generate import write_files
from axhw.rtl.pe import ArrayConfig, generate_array

__all__ = ["ArrayProgram", "LayerPlan", "NetworkDoesNotFit", "compile_network", "load_network", "write_array"]


class NetworkDoesNotFit(ValueError):
    """The network needs more of some array resource than the configuration has (the message says which)."""


@dataclass(frozen=True)
class LayerPlan:
    """Where one layer lives in the array.

    Attributes:
        fan_in, fan_out: layer shape.
        in_base: neuron buffer address of the input vector.
        out_base: neuron buffer address of the outputs (hidden layers) or output buffer address (last).
        w_base, b_base: first weight / bias buffer word.
        shift: re-quantization shift ``acc_frac - out_frac`` (0 for the output layer).
        relu: ReLU after re-quantization.
        last: the output layer (saturated accumulators to the output buffer).
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


@dataclass
class ArrayProgram:
    """A network compiled for one :class:`ArrayConfig`: layout plus the memory image texts."""

    config: ArrayConfig
    layers: list[LayerPlan]
    images: dict[str, str]

    @property
    def n_inputs(self) -> int:
        return self.layers[0].fan_in

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].fan_out

    @property
    def hidden_span(self) -> tuple[int, int]:
        """Neuron buffer range ``[lo, hi)`` holding every hidden layer's activations."""
        return self.layers[0].fan_in, self.layers[-1].in_base + self.layers[-1].fan_in

    def describe(self) -> dict[str, object]:
        return {"config_id": self.config.config_id, "layers": [asdict(p) for p in self.layers]}


def load_network(path: str | os.PathLike[str]) -> QuantizedNetwork:
    """A :class:`QuantizedNetwork` file (``QuantizedNetwork.save``) or a training checkpoint."""
    try:
        return QuantizedNetwork.load(path)
    except ValueError:
        from axhw.train import load_checkpoint, quantized_from_checkpoint

        try:
            return quantized_from_checkpoint(load_checkpoint(path))
        except ValueError as exc:
            raise ValueError(f"{path}: neither a QuantizedNetwork file nor a training checkpoint ({exc})") from exc


def _hex(value: int, width: int) -> str:
    return f"{value & ((1 << width) - 1):0{(width + 3) // 4}x}"


def _fc_layers(qnet: QuantizedNetwork) -> list[tuple[IntLinear, bool]]:
    """(layer, followed by ReLU) for an MLP; anything but linear/ReLU (and a leading flatten) is refused."""
    out: list[tuple[IntLinear, bool]] = []
    for i, op in enumerate(qnet.ops):
        if isinstance(op, IntFlatten) and not out:
            continue
        if isinstance(op, IntLinear) and op.kind == "linear":
            nxt = qnet.ops[i + 1] if i + 1 < len(qnet.ops) else None
            out.append((op, isinstance(nxt, IntReLU)))
        elif isinstance(op, IntReLU) and out:
            continue
        else:
            raise NetworkDoesNotFit(
                f"the PE array runs fully-connected layers (with ReLU) only; op {i} is {op.kind!r}"
            )
    return out


def _need(what: int, have: int, resource: str, option: str) -> None:
    if what > have:
        raise NetworkDoesNotFit(f"network needs {what} {resource} but the array has {have}: regenerate with {option}")


def _pow2_at_least(n: int) -> int:
    return 1 << max(1, (n - 1).bit_length())


def compile_network(
    acfg: ArrayConfig, qnet: QuantizedNetwork, modes: list[torch.Tensor] | None = None
) -> ArrayProgram:
    """Lay ``qnet`` out in ``acfg``'s memories and encode the instruction stream.

    Args:
        modes: per layer, a bool tensor over output neurons: True = approximate multiplier, False = exact
            (needs ``acfg.dual``). Default: every neuron approximate.

    Raises:
        NetworkDoesNotFit: formats differ from the array's words, or a memory is too small (the message
            names the ``--option`` / :class:`ArrayConfig` field to raise).
    """
    fcs = _fc_layers(qnet)
    if modes is not None and not acfg.dual:
        raise ValueError("per-neuron multiplier modes need an array generated with dual=True (--dual)")
    if modes is not None and len(modes) != len(fcs):
        raise ValueError(f"modes has {len(modes)} entries, the network {len(fcs)} layers")
    pes, bits = acfg.pes, acfg.bits
    w = acfg.widths()
    plans: list[LayerPlan] = []
    words: list[str] = []
    bwords: list[str] = []
    nb_next = fcs[0][0].weight.shape[1]
    in_base = 0
    for li, (layer, relu) in enumerate(fcs):
        fan_out, fan_in = layer.weight.shape
        last = li == len(fcs) - 1
        for name, fmt in (("activation", layer.act_fmt), ("weight", layer.weight_fmt)):
            if fmt.bits != bits:
                raise NetworkDoesNotFit(f"layer {li}: {name} words have {fmt.bits} bits, the array {bits}: "
                                        f"regenerate with --bits {fmt.bits}")
        if layer.acc_fmt.bits != acfg.acc_bits:
            raise NetworkDoesNotFit(f"layer {li}: accumulator has {layer.acc_fmt.bits} bits, the array "
                                    f"{acfg.acc_bits}: regenerate with acc_bits={layer.acc_fmt.bits}")
        assert layer.bias_fmt is not None
        _need(layer.bias_fmt.bits, acfg.bias_bits, "bias bits", f"bias_bits >= {layer.bias_fmt.bits}")
        _need(fan_in, acfg.max_fan_in, f"inputs in layer {li}",
              f"--max-fan-in {_pow2_at_least(fan_in)}")
        shift, out_base = 0, 0
        if last:
            _need(fan_out, acfg.obuf_depth, "output buffer words", f"--obuf-depth {_pow2_at_least(fan_out)}")
        else:
            assert layer.out_fmt is not None
            if layer.out_fmt.bits != bits:
                raise NetworkDoesNotFit(f"layer {li}: output activations have {layer.out_fmt.bits} bits, "
                                        f"the array {bits}")
            shift = layer.acc_fmt.frac - layer.out_fmt.frac
            if shift >= acfg.acc_bits:
                raise NetworkDoesNotFit(f"layer {li}: re-quantization shift {shift} >= acc_bits={acfg.acc_bits}")
            out_base = nb_next
            nb_next += fan_out
        groups = -(-fan_out // pes)
        plans.append(LayerPlan(fan_in, fan_out, in_base, out_base, len(words), len(bwords), shift, relu, last))
        wt = layer.weight.to(torch.int64).tolist()
        bias = layer.bias.to(torch.int64).tolist()
        mode = [True] * fan_out if modes is None else [bool(m) for m in modes[li].tolist()]
        for g in range(groups):
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
        in_base = out_base
    _need(nb_next, acfg.nbuf_depth, "neuron buffer words", f"--nbuf-depth {_pow2_at_least(nb_next)}")
    _need(len(words), acfg.wbuf_depth, "weight buffer words", f"--wbuf-depth {_pow2_at_least(len(words))}")
    _need(len(bwords), acfg.bbuf_depth, "bias buffer words", f"--bbuf-depth {_pow2_at_least(len(bwords))}")
    _need(len(plans) + 1, acfg.imem_depth, "instruction words", f"--imem-depth {_pow2_at_least(len(plans) + 1)}")
    instrs = [_hex(encode(acfg, p), acfg.instr_bits) for p in plans] + [_hex(0, acfg.instr_bits)]
    images = {
        "array_imem.hex": "\n".join(instrs) + "\n",
        "array_wbuf.hex": "\n".join(words) + "\n",
        "array_bbuf.hex": "\n".join(bwords) + "\n",
    }
    program = ArrayProgram(acfg, plans, images)
    images["array_program.json"] = json.dumps(program.describe(), indent=1) + "\n"
    return program


def encode(acfg: ArrayConfig, plan: LayerPlan) -> int:
    """One FC instruction word (fields from :meth:`ArrayConfig.fields`)."""
    left = plan.shift < 0
    amt = min(-plan.shift, acfg.bits) if left else plan.shift
    values = {
        "op": 1,
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
) -> list[Path]:
    """Generate the array's RTL (and, with ``qnet``, its memory images) and write them atomically.

    Nothing is written unless the RTL parses, the ports check out and the network fits.
    """
    files = generate_array(acfg)
    if qnet is not None:
        files.update(compile_network(acfg, qnet, modes).images)
    return write_files(files, out_dir)
