"""Action counts of one inference on the PE array, from the compiled program and the network's operands alone.

The model engine (:mod:`axhw.power.accel.model`) prices actions, in the style of Accelergy (Wu et al., ICCAD
2019: energy = sum over components of action counts x energy per action). Here the actions are read off the
program (:mod:`axhw.rtl.program`) and the golden model (``forward_int``), with no simulation:

* **cycles** of the counted window: the input load (one host write per input word), the start pulse and the
  sequencer's busy cycles (:func:`axhw.rtl.program.step_cycles`, the RTL's exact schedule), one more for the
  HALT fetch; equal to the simulated count (``tests/power/test_accel_engines.py``);
* **memory accesses** per memory module (per instance for the PEs' local memories), counted the way the
  simulation counts them (:data:`axhw.power.accel.sim.READ_ENABLES`), equal to the simulated counts;
* **data-dependent switching**: the multiplier's operand and product streams, the accumulator's partial sums
  and the re-quantizer's inputs and outputs, in the order the array produces them (per PE lane: per group
  of output channels, per output pixel, the ``fan_in`` products), summarized as Hamming distances between
  consecutive values (``*_hd``: bits that change). The dynamic energy of a CMOS block is, to first order,
  proportional to the number of its nets that switch, and the nets that switch follow the bits of its inputs
  and outputs that change; the model's coefficients (energy per changed bit) are fitted to gate-level runs.
  What the order misses (the cycles between outputs, where the operands hold or change once) is small and
  absorbed by the fit.
* **schedule counts** that drive the control logic (the sequencer's and PE controllers' counters): cycles
  of weight loading, of gathering, outputs written, pooled outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from axhw.arith.multipliers import Multiplier
from axhw.golden.network import IntLinear, QuantizedNetwork
from axhw.rtl.pe import ArrayConfig
from axhw.rtl.program import ArrayProgram, LayerPlan, compile_network

__all__ = ["Actions", "action_counts", "hamming", "partial_product_hamming"]

_POP8 = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int64)


def partial_product_hamming(a: torch.Tensor, b: torch.Tensor, bits: int) -> int:
    """Partial-product bits that change between consecutive operand pairs (last dimension is time): the bits
    ``|a|_i & |b|_j`` of the magnitudes' ``bits x bits`` AND array, the first stage of any array or tree
    multiplier. Unlike the operands' own Hamming distances it sees that an operand's flips are free while the
    other operand is zero (sparse activations) and cost more against a dense one."""
    if a.shape[-1] < 2:
        return 0
    ma, mb = a.abs() & ((1 << bits) - 1), b.abs() & ((1 << bits) - 1)
    total = 0
    for j in range(bits):
        row = torch.where(((mb >> j) & 1).bool(), ma, torch.zeros_like(ma))
        total += hamming(row, bits)
    return total


def hamming(seq: torch.Tensor, bits: int) -> int:
    """Bits that change between consecutive values of ``seq`` (last dimension is time; values as two's
    complement words of ``bits`` bits), summed over everything."""
    if seq.shape[-1] < 2:
        return 0
    x = (seq[..., 1:] ^ seq[..., :-1]) & ((1 << bits) - 1)  # non-negative for bits < 63
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0: a popcount instruction per word
        return int(np.bitwise_count(x.numpy()).sum(dtype=np.int64))
    total = 0
    for shift in range(0, bits, 8):
        total += int(_POP8[(x >> shift) & 0xFF].sum())
    return total


@dataclass
class Actions:
    """Actions of one inference (averaged over the samples given).

    Attributes:
        cycles: clock cycles of the counted window (input load to done).
        reads, writes: per memory module (``array_wbuf``...; the PEs' ``pe_nlm``/``pe_wlm``: per PE).
        features: the data-dependent and schedule counts the energy model prices (see the module docstring).
        samples: inputs averaged over.
    """

    cycles: float
    reads: dict[str, float]
    writes: dict[str, float]
    features: dict[str, float]
    samples: int


def _layer_of(qnet: QuantizedNetwork, plan: LayerPlan) -> IntLinear:
    for i in range(plan.op, -1, -1):
        if isinstance(qnet.ops[i], IntLinear):
            layer = qnet.ops[i]
            assert isinstance(layer, IntLinear)
            return layer
    raise ValueError(f"no layer before op {plan.op}")


def _columns(x: torch.Tensor, plan: LayerPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, pixels, fan_in)`` windows of the step's input (zero padding as the gather inserts it) and the
    ``(pixels, fan_in)`` mask of the elements inside the map (what the neuron buffer is read for)."""
    n = x.shape[0]
    c, h, w = plan.in_shape
    maps = x.reshape(n, c, h, w).to(torch.float64)  # |codes| < 2**53: exact in float64
    pt, pl, pb, pr = plan.pad
    padded = F.pad(maps, (pl, pr, pt, pb))
    cols = F.unfold(padded, plan.kernel, stride=plan.stride)  # (N, C*kh*kw, L), torch's (c, ky, kx) order
    inside = F.unfold(F.pad(torch.ones(1, c, h, w, dtype=torch.float64), (pl, pr, pt, pb)), plan.kernel,
                      stride=plan.stride)[0]
    return cols.transpose(1, 2).round().to(torch.int64), inside.transpose(0, 1) > 0


def action_counts(acfg: ArrayConfig, qnet: QuantizedNetwork, x_int: torch.Tensor, mul: Multiplier | None = None,
                  program: ArrayProgram | None = None) -> Actions:
    """The actions of running ``x_int`` (input codes, one row per sample; a conv network's as ``(N, C, H, W)``)
    through ``qnet`` on the array ``acfg`` (multiplier: the array's own model unless ``mul``)."""
    from axhw.rtl.netverify import reference_outputs

    shape = tuple(x_int.shape[1:]) if x_int.dim() == 4 else None
    program = program or compile_network(acfg, qnet, input_shape=shape)
    mul = mul or acfg.approx_model()
    x_int = x_int.to(torch.int64)
    outs = reference_outputs(qnet, x_int, mul, program=program)
    n, pes, bits = x_int.shape[0], acfg.pes, acfg.bits
    w = acfg.widths()
    aw, pbits, acc = w["aw"], w["pbits"], w["acc"]
    reads = {m: 0.0 for m in ("array_wbuf", "array_nbuf", "array_bbuf", "array_obuf", "array_imem", "pe_nlm",
                              "pe_wlm")}
    writes = dict.fromkeys(reads, 0.0)
    f = dict.fromkeys(("mul_in_hd", "mul_out_hd", "mul_pp_hd", "wbuf_hd", "nbuf_hd", "products", "acc_hd",
                       "acc_clears", "rq_writes", "rq_in_hd", "rq_out_hd", "loadw_cycles", "loadn_cycles", "pixels",
                       "pool_outputs", "pool_reads", "input_words"), 0.0)
    # per lane, one stream of (activation, weight, product) and one of partial sums, over the whole inference
    a_seq: list[torch.Tensor] = []
    w_seq: list[torch.Tensor] = []
    p_seq: list[torch.Tensor] = []
    s_seq: list[torch.Tensor] = []
    rq_in: list[torch.Tensor] = []
    rq_out: list[torch.Tensor] = []
    cur = x_int.flatten(1)
    writes["array_nbuf"] += program.n_inputs * n
    f["input_words"] = program.n_inputs * n
    for li, plan in enumerate(program.layers):
        out = outs[li]
        groups = -(-plan.fan_out // pes)
        pix, fi = plan.pixels, plan.fan_in
        if plan.kind == "maxpool2d":  # per channel, its window's elements (no padding: all inside)
            window_reads = plan.out_size * fi * n
            reads["array_nbuf"] += window_reads
            writes["array_nbuf"] += plan.out_size * n
            f["pool_outputs"] += plan.out_size * n
            f["pool_reads"] += window_reads
            cur = out
            continue
        cols, inside = _columns(cur, plan)  # (N, pix, f), (pix, f)
        layer = _layer_of(qnet, plan)
        wmat = layer.weight.to(torch.int64).reshape(plan.fan_out, fi)
        wpad = torch.zeros(groups * pes, fi, dtype=torch.int64)
        wpad[: plan.fan_out] = wmat
        bias = torch.zeros(groups * pes, dtype=torch.int64)
        bias[: plan.fan_out] = layer.bias.to(torch.int64)
        # memories (per sample; the PEs' local memories per PE)
        reads["array_wbuf"] += groups * fi * n
        writes["pe_wlm"] += groups * fi * n
        single = pix == 1
        gathered_groups = 1 if single else groups  # single-pixel layers gather once, then compute behind LOADW
        reads["array_nbuf"] += float(inside.sum()) * gathered_groups * n
        writes["pe_nlm"] += gathered_groups * pix * fi * n
        reads["pe_nlm"] += groups * pix * fi * n
        reads["pe_wlm"] += groups * pix * fi * n
        reads["array_bbuf"] += groups * pix * n
        if plan.last:
            writes["array_obuf"] += plan.out_size * n
        else:
            writes["array_nbuf"] += plan.out_size * n
        f["loadw_cycles"] += groups * fi * n
        f["loadn_cycles"] += gathered_groups * pix * fi * n
        f["pixels"] += groups * pix * n
        f["products"] += groups * pix * fi * n * pes
        f["acc_clears"] += groups * pix * n * pes
        # operand streams per lane: (N, G, pix, f) activations, the lane's weights broadcast over pixels
        acts = cols.unsqueeze(1).expand(n, groups, pix, fi)
        wl = wpad.reshape(groups, pes, 1, fi).permute(1, 0, 2, 3)  # (P, G, 1, f)
        a_l = acts.unsqueeze(0).expand(pes, n, groups, pix, fi)
        w_l = wl.unsqueeze(1).expand(pes, n, groups, pix, fi)
        prod = mul(a_l, w_l)
        # the buses the glue drives: weight-buffer words (once per group) and gathered activations
        f["wbuf_hd"] += hamming(wpad.reshape(groups, pes, fi).permute(1, 0, 2).reshape(pes, -1), bits) * n
        f["nbuf_hd"] += hamming(cols[:, None].expand(n, gathered_groups, pix, fi).reshape(-1), bits)
        a_seq.append(a_l.reshape(pes, -1))
        w_seq.append(w_l.reshape(pes, -1))
        p_seq.append(prod.reshape(pes, -1))
        start = bias.reshape(groups, pes).t().reshape(pes, 1, groups, 1, 1).expand(pes, n, groups, pix, 1)
        sums = torch.cat([start, start + prod.cumsum(-1)], dim=-1)
        s_seq.append(sums.reshape(pes, -1))
        # re-quantization: the written words in write order (per group, per pixel, the valid lanes in order)
        lo, hi = -(1 << (acc - 1)), (1 << (acc - 1)) - 1
        y = sums[..., -1].clamp(lo, hi).permute(1, 2, 3, 0)  # (N, G, pix, P)
        o = torch.zeros(n, groups * pes, pix, dtype=torch.int64)
        o[:, : plan.fan_out] = out.reshape(n, plan.fan_out, pix)
        o = o.reshape(n, groups, pes, pix).permute(0, 1, 3, 2)  # (N, G, pix, P)
        valid = (torch.arange(groups * pes) < plan.fan_out).reshape(groups, 1, pes).expand(groups, pix, pes)
        rq_in.append(y[:, valid].reshape(-1))
        rq_out.append(o[:, valid].reshape(-1))
        f["rq_writes"] += plan.out_size * n
        cur = out
    reads["array_imem"] = (len(program.layers) + 1) * n  # one fetch per step, HALT included (address changes)
    reads["array_obuf"] = 1.0 * n  # the host's read address, changed once per sample (read-back not counted)
    mask = (1 << 62) - 1
    if a_seq:
        a_all, w_all, p_all, s_all = (torch.cat(s, dim=1) for s in (a_seq, w_seq, p_seq, s_seq))
        f["mul_in_hd"] = hamming(a_all & mask, bits) + hamming(w_all & mask, bits)
        f["mul_out_hd"] = hamming(p_all & mask, pbits)
        tr = getattr(mul, "transform", None)  # separable multipliers (exact, DRUM): the operands the core sees
        ta, tw = (tr(a_all), tr(w_all)) if callable(tr) else (a_all, w_all)
        f["mul_pp_hd"] = partial_product_hamming(ta, tw, bits + 1)
        f["acc_hd"] = hamming(s_all & mask, aw)
        rin, rout = torch.cat(rq_in), torch.cat(rq_out)
        f["rq_in_hd"] = hamming(rin & mask, acc)
        f["rq_out_hd"] = hamming(rout & mask, acc if program.layers[-1].last else bits)
    cycles = n * (program.n_inputs + 1 + program.cycles_per_inference)
    per = 1.0 / n
    return Actions(cycles=cycles * per, reads={k: v * per for k, v in reads.items()},
                   writes={k: v * per for k, v in writes.items()}, features={k: v * per for k, v in f.items()},
                   samples=n)

