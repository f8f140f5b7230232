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

from dataclasses import dataclass, field

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
        reads, writes: per memory module (``array_wbuf``...), or per instance where instances differ (the PEs'
            local memories ``u_pe3.u_nlm``: idle lanes are not loaded); :meth:`accesses` looks either up.
        features: the data-dependent and schedule counts the energy model prices (see the module docstring).
        samples: inputs averaged over.
        gated: per clock gate instance (``u_pe3.u_cg``, ``u_seq.u_cg_fields``...), the cycles it lets the clock
            through (rtl/clock_gate.v.j2): a PE's while it starts, computes and finishes (``fan_in + 2`` per output
            pixel of each group in which its lane is on); the sequencer's: the instruction fields' in FETCH, the
            pixel state's at each pixel's end and FETCH, the window walk's while placing and walking windows,
            the write-back lane's at the PEs' done and per lane written, the pooling maximum's while pooling.
    """

    cycles: float
    reads: dict[str, float]
    writes: dict[str, float]
    features: dict[str, float]
    samples: int
    gated: dict[str, float] = field(default_factory=dict)

    def accesses(self, path: str, module: str) -> tuple[float, float]:
        """(reads, writes) per inference of the memory instance ``path`` of ``module``."""
        key = path if path in self.reads else module
        return self.reads.get(key, 0.0), self.writes.get(key, 0.0)


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
    reads = {m: 0.0 for m in ("array_wbuf", "array_nbuf", "array_bbuf", "array_obuf", "array_imem")}
    for p in range(pes):
        reads[f"u_pe{p}.u_nlm"] = 0.0
    writes = dict.fromkeys(reads, 0.0)
    gated = {f"u_pe{p}.u_cg": 0.0 for p in range(pes)}
    seq = dict.fromkeys(("u_seq.u_cg_pixel", "u_seq.u_cg_walk", "u_seq.u_cg_write", "u_seq.u_cg_pool",
                         "u_seq.u_cg_waddr"), 0.0)
    f = dict.fromkeys(("mul_in_hd", "mul_out_hd", "mul_pp_hd", "wbuf_hd", "nbuf_hd", "products", "acc_hd",
                       "acc_clears", "rq_writes", "rq_in_hd", "rq_out_hd", "run_cycles", "loadn_cycles", "pixels",
                       "pool_outputs", "pool_reads", "input_words"), 0.0)
    # per lane, one stream of (activation, weight, product) and one of partial sums over the whole inference,
    # over the groups in which the lane has an output channel (an idle lane's operands hold: idle lanes off)
    a_seq: list[list[torch.Tensor]] = [[] for _ in range(pes)]
    w_seq: list[list[torch.Tensor]] = [[] for _ in range(pes)]
    p_seq: list[list[torch.Tensor]] = [[] for _ in range(pes)]
    s_seq: list[list[torch.Tensor]] = [[] for _ in range(pes)]
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
            # sequencer clock gates: per output, WSTART + the window walk, then PWRITE ends the pixel
            seq["u_seq.u_cg_pixel"] += plan.out_size * n
            seq["u_seq.u_cg_walk"] += plan.out_size * (1 + fi) * n
            seq["u_seq.u_cg_pool"] += window_reads
            cur = out
            continue
        cols, inside = _columns(cur, plan)  # (N, pix, f), (pix, f)
        layer = _layer_of(qnet, plan)
        wmat = layer.weight.to(torch.int64).reshape(plan.fan_out, fi)
        wpad = torch.zeros(groups * pes, fi, dtype=torch.int64)
        wpad[: plan.fan_out] = wmat
        bias = torch.zeros(groups * pes, dtype=torch.int64)
        bias[: plan.fan_out] = layer.bias.to(torch.int64)
        # lane p has an output channel in group g (the sequencer's pe_lanes)
        on = (torch.arange(groups)[None, :] * pes + torch.arange(pes)[:, None]) < plan.fan_out  # (P, G)
        single = pix == 1
        gathered_groups = 1 if single else groups  # single-pixel layers gather once, then RUN the later groups
        # memories (per sample; the PEs' neuron local memories per PE instance: idle lanes are not loaded; the
        # weight and bias stores per lane read: each product reads the PE's weight, each start its bias)
        for p in range(pes):
            g_on = int(on[p].sum())
            writes[f"u_pe{p}.u_nlm"] += (int(on[p, 0]) if single else g_on) * pix * fi * n
            reads[f"u_pe{p}.u_nlm"] += g_on * pix * fi * n
            reads["array_wbuf"] += g_on * pix * fi * n
            reads["array_bbuf"] += g_on * pix * n
            gated[f"u_pe{p}.u_cg"] += g_on * pix * (fi + 2) * n  # start, fan_in products, done
        reads["array_nbuf"] += float(inside.sum()) * gathered_groups * n
        if plan.last:
            writes["array_obuf"] += plan.out_size * n
        else:
            writes["array_nbuf"] += plan.out_size * n
        f["run_cycles"] += (groups - gathered_groups) * fi * n
        f["loadn_cycles"] += gathered_groups * pix * fi * n
        f["pixels"] += groups * pix * n
        f["products"] += plan.fan_out * pix * fi * n
        f["acc_clears"] += plan.fan_out * pix * n
        # operand streams per lane: (N, G, pix, f) activations, the lane's weights broadcast over pixels
        acts = cols.unsqueeze(1).expand(n, groups, pix, fi)
        wl = wpad.reshape(groups, pes, 1, fi).permute(1, 0, 2, 3)  # (P, G, 1, f)
        a_l = acts.unsqueeze(0).expand(pes, n, groups, pix, fi)
        w_l = wl.unsqueeze(1).expand(pes, n, groups, pix, fi)
        prod = mul(a_l, w_l)
        # the buses the glue drives: the weight store's lanes (one word per product) and gathered activations
        f["wbuf_hd"] += hamming(w_l.reshape(pes, -1), bits)
        f["nbuf_hd"] += hamming(cols[:, None].expand(n, gathered_groups, pix, fi).reshape(-1), bits)
        start = bias.reshape(groups, pes).t().reshape(pes, 1, groups, 1, 1).expand(pes, n, groups, pix, 1)
        sums = torch.cat([start, start + prod.cumsum(-1)], dim=-1)
        for p in range(pes):
            if on[p].any():
                a_seq[p].append(a_l[p][:, on[p]].reshape(-1))
                w_seq[p].append(w_l[p][:, on[p]].reshape(-1))
                p_seq[p].append(prod[p][:, on[p]].reshape(-1))
                s_seq[p].append(sums[p][:, on[p]].reshape(-1))
        # re-quantization: the written words in write order (per group, per pixel, the valid lanes in order)
        lo, hi = -(1 << (acc - 1)), (1 << (acc - 1)) - 1
        y = sums[..., -1].clamp(lo, hi).permute(1, 2, 3, 0)  # (N, G, pix, P)
        o = torch.zeros(n, groups * pes, pix, dtype=torch.int64)
        o[:, : plan.fan_out] = out.reshape(n, plan.fan_out, pix)
        o = o.reshape(n, groups, pes, pix).permute(0, 1, 3, 2)  # (N, G, pix, P)
        valid = on.t().reshape(groups, 1, pes).expand(groups, pix, pes)
        rq_in.append(y[:, valid].reshape(-1))
        rq_out.append(o[:, valid].reshape(-1))
        f["rq_writes"] += plan.out_size * n
        # sequencer clock gates: a pixel ends once per group and pixel; windows are placed and walked where
        # gathered; the write-back bank takes the PEs' done, then one cycle per lane written
        seq["u_seq.u_cg_pixel"] += groups * pix * n
        seq["u_seq.u_cg_walk"] += gathered_groups * pix * (1 + fi) * n
        seq["u_seq.u_cg_write"] += (groups * pix + plan.out_size) * n
        # the weight store's address register: PE 0's start, then its fan_in products (lane 0 is always on)
        seq["u_seq.u_cg_waddr"] += groups * pix * (1 + fi) * n
        cur = out
    reads["array_imem"] = (len(program.layers) + 1) * n  # one fetch per step, HALT included (address changes)
    reads["array_obuf"] = 1.0 * n  # the host's read address, changed once per sample (read-back not counted)
    fetches = (len(program.layers) + 1) * n  # one FETCH per step, HALT included
    gated["u_seq.u_cg_fields"] = fetches  # the instruction fields: FETCH cycles only
    gated["u_seq.u_cg_pixel"] = seq["u_seq.u_cg_pixel"] + fetches
    gated["u_seq.u_cg_walk"] = seq["u_seq.u_cg_walk"]
    gated["u_seq.u_cg_write"] = seq["u_seq.u_cg_write"] + fetches
    gated["u_seq.u_cg_pool"] = seq["u_seq.u_cg_pool"]
    gated["u_seq.u_cg_waddr"] = seq["u_seq.u_cg_waddr"]
    mask = (1 << 62) - 1
    tr = getattr(mul, "transform", None)  # separable multipliers (exact, DRUM): the operands the core sees
    for p in range(pes):
        if not a_seq[p]:
            continue
        a_all, w_all, p_all, s_all = (torch.cat(q[p]) for q in (a_seq, w_seq, p_seq, s_seq))
        f["mul_in_hd"] += hamming(a_all & mask, bits) + hamming(w_all & mask, bits)
        f["mul_out_hd"] += hamming(p_all & mask, pbits)
        ta, tw = (tr(a_all), tr(w_all)) if callable(tr) else (a_all, w_all)
        f["mul_pp_hd"] += partial_product_hamming(ta, tw, bits + 1)
        f["acc_hd"] += hamming(s_all & mask, aw)
    if rq_in:
        rin, rout = torch.cat(rq_in), torch.cat(rq_out)
        f["rq_in_hd"] = hamming(rin & mask, acc)
        f["rq_out_hd"] = hamming(rout & mask, acc if program.layers[-1].last else bits)
    cycles = n * (program.n_inputs + 1 + program.cycles_per_inference)
    per = 1.0 / n
    return Actions(cycles=cycles * per, reads={k: v * per for k, v in reads.items()},
                   writes={k: v * per for k, v in writes.items()}, features={k: v * per for k, v in f.items()},
                   samples=n, gated={k: v * per for k, v in gated.items()})

