"""The integer golden model (axhw/golden/network.py) on hand-built networks: joins, pooling, persistence.

Why here: these checks pin what the golden model computes and writes independently of the hardware-aware
layers of :mod:`axhw.nn` (tests/nn), each against a reference written out in the test (brute-force loops,
the documented file layout). Several were written to kill mutants ``make mutate`` left alive
(docs/mutation.md).
"""

from __future__ import annotations

import pytest
import torch

from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.multipliers import DRUM, Exact
from axhw.golden.network import (
    IntAdd,
    IntCat,
    IntConv2d,
    IntFlatten,
    IntLinear,
    IntReLU,
    QuantizedNetwork,
    add_int,
    avgpool2d_int,
    cat_int,
)

ACT = FixedPoint(8, 4)
WGT = FixedPoint(8, 7)
ACC = FixedPoint(32, 11)


def _codes(shape: tuple[int, ...], fmt: FixedPoint, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(fmt.qmin, fmt.qmax + 1, shape, generator=g)


def _residual_net() -> QuantizedNetwork:
    """conv (2 -> 2 channels, 3x3, padding 1) -> ReLU -> add the input back -> flatten -> linear (3 classes)."""
    conv = IntConv2d(_codes((2, 2, 3, 3), WGT, 1), _codes((2,), FixedPoint(12, 11), 2), ACT, WGT, ACC, ACT,
                     padding=1)
    lin = IntLinear(_codes((3, 50), WGT, 3), _codes((3,), FixedPoint(12, 11), 4), ACT, WGT, ACC, None)
    return QuantizedNetwork([conv, IntReLU(), IntAdd([ACT, ACT], ACT, inputs=(2, 0)), IntFlatten(), lin])


# --------------------------------------------------------------------------- joins
def test_add_int_saturates_at_both_ends_of_the_output_word():
    out = FixedPoint(4, 0)  # [-8, 7]
    a, b = torch.tensor([-6, 6, 1]), torch.tensor([-6, 6, 2])
    assert add_int([a, b], [out, out], out).tolist() == [-8, 7, 3]


@pytest.mark.parametrize("join", [add_int, cat_int])
def test_joins_refuse_operand_and_format_counts_that_differ(join):
    """An operand without a format (or a format without an operand) is an error, never silently dropped."""
    x = torch.zeros(1, 2, 3, 3, dtype=torch.int64)
    with pytest.raises(ValueError):
        join([x, x, x], [ACT, ACT], ACT)
    with pytest.raises(ValueError):
        join([x, x], [ACT, ACT, ACT], ACT)


def test_cat_int_joins_channels_by_default_each_operand_requantized():
    a = torch.full((1, 2, 3, 3), 16)  # 1.0 in frac 4
    b = torch.full((1, 1, 3, 3), 64)  # 1.0 in frac 6
    out = cat_int([a, b], [FixedPoint(8, 4), FixedPoint(8, 6)], FixedPoint(8, 4))
    assert out.shape == (1, 3, 3, 3) and bool((out == 16).all())


# --------------------------------------------------------------------------- average pooling
def _avgpool_reference(a: torch.Tensor, kh: int, kw: int, sh: int, sw: int) -> torch.Tensor:
    """Window sums by loops, divided with round-half-up: floor(s / n + 1/2) = floor((2 s + n) / (2 n))."""
    n_, c, h, w = a.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = torch.empty(n_, c, oh, ow, dtype=torch.int64)
    for i in range(oh):
        for j in range(ow):
            s = a[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].sum(dim=(2, 3))
            out[:, :, i, j] = torch.div(2 * s + kh * kw, 2 * kh * kw, rounding_mode="floor")
    return out


@pytest.mark.parametrize(("kernel", "stride", "window"), [
    (None, None, None),            # global, over a map that is not square
    (2, None, (2, 2, 2, 2)),       # the stride defaults to the kernel
    ((2, 3), (1, 2), (2, 3, 1, 2)),  # a stride other than the kernel
    (3, 1, (3, 3, 1, 1)),
])
def test_avgpool2d_int_equals_window_loops(kernel, stride, window):
    a = _codes((2, 3, 5, 7), ACT, 5)
    kh, kw, sh, sw = (5, 7, 5, 7) if window is None else window
    got = avgpool2d_int(a, kernel, stride)
    assert got.dtype == torch.int64
    assert torch.equal(got, _avgpool_reference(a, kh, kw, sh, sw))
    if kernel is None:
        assert got.shape == (2, 3, 1, 1)


# --------------------------------------------------------------------------- network queries
def test_layer_inputs_picks_what_each_layer_reads_as_int64():
    net = _residual_net()
    x = _codes((2, 2, 5, 5), ACT, 6).to(torch.int32)
    outs = net.forward_int(x, Exact(8), return_all=True)
    assert isinstance(outs, list)
    ins = net.layer_inputs(outs, x)
    assert len(ins) == 2 and all(t.dtype == torch.int64 for t in ins)
    assert torch.equal(ins[0], x.to(torch.int64))  # the conv reads the network input
    assert ins[1] is outs[3]  # the linear layer reads the flattened sum (op 3)


def test_multiplies_per_inference_counts_products_per_output_position():
    net = _residual_net()
    x = _codes((4, 2, 5, 5), ACT, 7)
    assert net.multiplies_per_inference(x) == 2 * 2 * 9 * 25 + 3 * 50


def test_multiplies_per_inference_single_channel_and_wide_input():
    """One output channel (the count reads a channel's map) and input codes wider than the weights (the
    exact multiplier of the count must hold both)."""
    inp = FixedPoint(12, 4)
    conv = IntConv2d(_codes((1, 1, 3, 3), WGT, 8), torch.zeros(1, dtype=torch.int64), inp, WGT, ACC, ACT)
    lin = IntLinear(_codes((2, 16), WGT, 9), torch.zeros(2, dtype=torch.int64), ACT, WGT, ACC, None)
    net = QuantizedNetwork([conv, IntFlatten(), lin])
    x = torch.full((1, 1, 6, 6), inp.qmax)  # beyond an 8-bit operand
    assert net.multiplies_per_inference(x) == 9 * 16 + 2 * 16


def test_predict_is_the_argmax_of_the_integer_output_and_passes_options_on():
    net = _residual_net()
    x = torch.randn(6, 2, 5, 5, generator=torch.Generator().manual_seed(9))
    want = net.forward_int(net.quantize_input(x), DRUM(3, 8))
    assert isinstance(want, torch.Tensor)
    got = net.predict(x, DRUM(3, 8))
    assert got.shape == (6,) and torch.equal(got, want.argmax(dim=1))
    # options reach forward_int: parameters whose biases alone decide the class
    params = [(torch.zeros_like(layer.weight), layer.bias) for layer in net.layers]
    params[1] = (torch.zeros_like(net.layers[1].weight), torch.tensor([0, 0, 5]))
    assert net.predict(x, DRUM(3, 8), params=params).tolist() == [2] * 6


# --------------------------------------------------------------------------- persistence
def test_state_of_a_plain_chain_writes_only_the_keys_older_versions_wrote():
    lin = IntLinear(_codes((3, 4), WGT, 10), _codes((3,), FixedPoint(12, 11), 11), ACT, WGT, ACC, None)
    ops = QuantizedNetwork([lin, IntReLU()]).state()["ops"]
    assert set(ops[0]) == {"weight", "bias", "act_fmt", "weight_fmt", "acc_fmt", "out_fmt", "bias_fmt", "kind"}
    assert ops[1] == {"kind": "relu"}


def test_graph_network_round_trips_with_tuple_inputs(tmp_path):
    net = _residual_net()
    cat_net = QuantizedNetwork([*net.ops[:4], IntCat([ACT, ACT], ACT, inputs=(4, 4)),
                                IntLinear(_codes((3, 100), WGT, 12), torch.zeros(3, dtype=torch.int64), ACT, WGT,
                                          ACC, None)])
    path = tmp_path / "net.pt"
    cat_net.save(path)
    back = QuantizedNetwork.load(path)
    assert [op.kind for op in back.ops] == ["conv2d", "relu", "add", "flatten", "cat", "linear"]
    assert back.ops[2].inputs == (2, 0) and back.ops[4].inputs == (4, 4)
    x = _codes((2, 2, 5, 5), ACT, 13)
    assert torch.equal(back.forward_int(x, Exact(8)), cat_net.forward_int(x, Exact(8)))


class _Marker:
    """A pickle whose loading would create a file: the side effect of a code-carrying checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_load_refuses_a_code_carrying_pickle_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        torch.save({"format": "axhw.QuantizedNetwork", "x": _Marker(str(marker))}, f, pickle_protocol=2)
    with pytest.raises(ValueError, match=r"evil\.pt: not a readable QuantizedNetwork file \(UnpicklingError\); "
                                         r"re-export it"):
        QuantizedNetwork.load(bad)
    assert not marker.exists()
    # the same file read without the restriction would have run the code: the test's premise
    torch.load(bad, weights_only=False)  # deliberately, to show the payload is live
    assert marker.exists()


def test_load_and_from_state_errors_name_the_source(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "something else"}, path)
    with pytest.raises(ValueError, match=r"^.*other\.pt: not a QuantizedNetwork file$"):
        QuantizedNetwork.load(path)
    with pytest.raises(ValueError, match=r"^state: not a QuantizedNetwork file$"):
        QuantizedNetwork.from_state({"format": "x"})
    with pytest.raises(ValueError, match=r"^state: not a QuantizedNetwork file$"):
        QuantizedNetwork.from_state(["not", "a", "dict"])
    state = _residual_net().state()
    with pytest.raises(ValueError, match=r"^state: QuantizedNetwork version 7 unsupported \(need 1\)$"):
        QuantizedNetwork.from_state({**state, "version": 7})
    with pytest.raises(ValueError, match=r"^state: corrupt QuantizedNetwork \("):
        QuantizedNetwork.from_state({**state, "ops": [{"kind": "linear"}]})


@pytest.mark.parametrize("what", ["weight", "bias"])
def test_from_state_refuses_codes_outside_their_words(what):
    state = _residual_net().state()
    op = dict(state["ops"][0])
    op[what] = op[what].clone()
    op[what].view(-1)[0] = 1 << 40  # beyond the 8-bit weights and the 32-bit accumulator-format biases
    plural = {"weight": "weights", "bias": "biases"}[what]
    with pytest.raises(ValueError, match=rf"^net\.pt {plural} out of range"):
        QuantizedNetwork.from_state({**state, "ops": [op, *state["ops"][1:]]}, source="net.pt")


# --------------------------------------------------------------------------- convolution options
def test_conv2d_int_defaults_are_stride_1_no_padding(conv_brute):
    a, w, b = _codes((2, 2, 5, 6), ACT, 20), _codes((3, 2, 3, 2), WGT, 21), torch.tensor([5, -7, 0])
    want = conv_brute(DRUM(3, 8), a, w) + b.reshape(1, -1, 1, 1)
    from axhw.golden.network import conv2d_int
    assert torch.equal(conv2d_int(a, w, b, DRUM(3, 8)), want)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, (1, 2), (2, 1, 0, 1)])
def test_conv_padding_modes_copy_codes_as_nn_conv2d_pads_its_input(mode, padding, conv_brute):
    """Reflect/replicate/circular padding of codes, with int, (h, w) and F.pad 4-tuple paddings, through the
    layer (IntConv2d keeps its padding mode) and the function alike."""
    from axhw.golden.network import conv2d_int
    a, w, b = _codes((1, 2, 6, 5), ACT, 22), _codes((2, 2, 3, 3), WGT, 23), torch.tensor([3, -3])
    pad4 = padding if isinstance(padding, tuple) and len(padding) == 4 else (
        (padding, padding, padding, padding) if isinstance(padding, int) else (padding[1], padding[1], padding[0], padding[0]))
    padded = torch.nn.functional.pad(a.double(), pad4, mode=mode).long()
    want = conv_brute(Exact(8), padded, w) + b.reshape(1, -1, 1, 1)
    assert torch.equal(conv2d_int(a, w, b, Exact(8), padding=padding, padding_mode=mode), want)
    layer = IntConv2d(w, b, ACT, WGT, ACC, None, padding=padding, padding_mode=mode)
    assert torch.equal(layer.accumulate(a, Exact(8), w, b), want)
    if not isinstance(padding, int):  # a zero-padded (h, w) pair or 4-tuple differs from the copied codes
        zero = torch.nn.functional.pad(a, pad4)
        assert not torch.equal(conv_brute(Exact(8), zero, w) + b.reshape(1, -1, 1, 1), want)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("mask", [[True, False, False, True], [False, True, True, True], [True] * 4, [False] * 4])
def test_conv_per_channel_modes_take_each_channels_multiplier(groups, mask, conv_brute):
    """Output channels marked in ``approx_neurons`` multiply with ``approx``, the others with the exact
    multiplier, grouped convolutions included (a subset of channels would break the group structure)."""
    a, w, b = _codes((2, 4, 5, 5), ACT, 24), _codes((4, 4 // groups, 3, 3), WGT, 25), torch.tensor([1, 2, 3, 4])
    approx = DRUM(1, 8)
    layer = IntConv2d(w, b, ACT, WGT, ACC, None, padding=1, groups=groups, approx_neurons=torch.tensor(mask))
    exact_all = conv_brute(Exact(8), a, w, padding=1, groups=groups)
    approx_all = conv_brute(approx, a, w, padding=1, groups=groups)
    want = torch.where(torch.tensor(mask).reshape(1, -1, 1, 1), approx_all, exact_all) + b.reshape(1, -1, 1, 1)
    assert torch.equal(layer.accumulate_modes(a, Exact(8), w, b, approx), want)
    # without an approximate multiplier the mask is inert
    assert torch.equal(layer.accumulate_modes(a, Exact(8), w, b), exact_all + b.reshape(1, -1, 1, 1))


def test_grouped_conv_without_a_mask_ignores_the_approximate_multiplier(conv_brute):
    a, w, b = _codes((1, 4, 5, 5), ACT, 26), _codes((4, 2, 3, 3), WGT, 27), torch.tensor([1, 2, 3, 4])
    layer = IntConv2d(w, b, ACT, WGT, ACC, None, groups=2)
    want = conv_brute(Exact(8), a, w, groups=2) + b.reshape(1, -1, 1, 1)
    assert torch.equal(layer.accumulate_modes(a, Exact(8), w, b, DRUM(1, 8)), want)
