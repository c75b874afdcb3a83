"""Ternary/binary weight quantizers, per-token int8 activations, the integer reference and torch fake-quant."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pimsim.workloads.quantize import (
    EPS,
    QUANTIZERS,
    QuantizedWeight,
    get_quantizer,
    int_gemv,
    quantize_activation_int8,
    quantized_linear,
)

F32 = np.float32
SMALL = np.array([[1.0, -0.2, 0.0], [0.3, 0.3, -0.9]])

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
matrices = hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=finite)
vectors = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=12), elements=finite)


# --- weights: known values -------------------------------------------------------------------------------------

def test_bitnet_known_values():
    qw = get_quantizer("bitnet").quantize_weight(np.array([[0.5, -1.5], [0.1, 3.0]]))
    assert qw.fmt == "ternary" and qw.granularity == "tensor"
    assert isinstance(qw.scale, np.ndarray) and qw.scale.dtype == np.float32 and qw.scale.shape == ()
    assert qw.codes.dtype == np.int8
    assert qw.scale == F32(1.275 + EPS)  # mean|W| = 5.1 / 4, plus eps
    np.testing.assert_array_equal(qw.codes, [[0, -1], [0, 1]])
    np.testing.assert_array_equal(qw.dequantize(), np.array([[0, -1], [0, 1]], F32) * F32(1.275 + EPS))
    assert qw.dequantize().dtype == np.float32


def test_bitnet_on_second_matrix():
    qw = get_quantizer("bitnet").quantize_weight(SMALL)  # gamma = 2.7 / 6 = 0.45
    assert qw.scale == F32(0.45 + EPS)
    np.testing.assert_array_equal(qw.codes, [[1, 0, 0], [1, 1, -1]])


def test_liu_ternary_per_row():
    qw = get_quantizer("liu-ternary").quantize_weight(SMALL)
    assert qw.fmt == "ternary" and qw.granularity == "row"
    np.testing.assert_array_equal(qw.scale, np.array([4 / 3 * 0.4, 4 / 3 * 0.5], F32))
    np.testing.assert_array_equal(qw.codes, [[1, 0, 0], [0, 0, -1]])
    np.testing.assert_array_equal(qw.dequantize(), qw.codes.astype(F32) * qw.scale[:, None])


def test_liu_binary_per_row_and_sign_of_zero():
    qw = get_quantizer("liu-binary").quantize_weight(SMALL)
    assert qw.fmt == "binary" and qw.granularity == "row"
    np.testing.assert_array_equal(qw.scale, np.array([0.4, 0.5], F32))
    np.testing.assert_array_equal(qw.codes, [[1, -1, 1], [1, 1, -1]])  # sign(0) = +1
    assert get_quantizer("liu-binary").quantize_weight(np.array([[-0.0, 2.0]])).codes.tolist() == [[1, 1]]


def test_all_zero_rows_do_not_divide_by_zero():
    w = np.array([[0.0, 0.0], [1.0, -1.0]])
    t = get_quantizer("liu-ternary").quantize_weight(w)
    np.testing.assert_array_equal(t.codes, [[0, 0], [1, -1]])
    assert t.scale[0] == F32(EPS)
    assert get_quantizer("liu-binary").quantize_weight(w).codes[0].tolist() == [1, 1]
    assert get_quantizer("bitnet").quantize_weight(np.zeros((2, 2))).codes.tolist() == [[0, 0], [0, 0]]


def test_rejects_bad_inputs():
    q = get_quantizer("bitnet")
    with pytest.raises(ValueError):
        q.quantize_weight(np.ones(3))
    with pytest.raises(ValueError):
        q.quantize_weight(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError):
        q.quantize_activation(np.ones((2, 2, 2)))
    with pytest.raises(ValueError):
        QuantizedWeight(np.array([[0, 1]], np.int8), np.float32(1.0), "binary", "tensor")  # 0 is not binary
    with pytest.raises(ValueError):
        QuantizedWeight(np.array([[0, 1]], np.int8), np.ones(1, F32), "ternary", "tensor")  # row scale
    with pytest.raises(ValueError):
        QuantizedWeight(np.array([[0, 1]], np.int8), np.float32(1.0), "quaternary", "tensor")


def test_registry_and_unknown_name():
    assert set(QUANTIZERS) == {"bitnet", "liu-ternary", "liu-binary"}
    assert {q.weight_format for q in QUANTIZERS.values()} == {"ternary", "binary"}
    with pytest.raises(ValueError, match="bitnet.*liu-binary.*liu-ternary"):
        get_quantizer("nope")


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    for name, q in QUANTIZERS.items():
        ref = q.quantize_weight(SMALL.astype(F32))
        for dtype in (torch.float32, torch.float64):
            got = q.quantize_weight(torch.tensor(SMALL.astype(F32), dtype=dtype))
            np.testing.assert_array_equal(got.codes, ref.codes, err_msg=name)
            np.testing.assert_array_equal(got.scale, ref.scale, err_msg=name)
    bf = torch.tensor(SMALL, dtype=torch.bfloat16)
    got = QUANTIZERS["bitnet"].quantize_weight(bf)
    np.testing.assert_array_equal(got.codes, QUANTIZERS["bitnet"].quantize_weight(bf.float().numpy()).codes)
    codes, scale = QUANTIZERS["bitnet"].quantize_activation(torch.tensor([0.5, -1.0]))
    assert codes.tolist() == [64, -127] and scale == F32(127.0)


# --- weights: properties -------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(w=matrices, name=st.sampled_from(sorted(QUANTIZERS)))
def test_codes_in_format_set(w, name):
    q = get_quantizer(name)
    qw = q.quantize_weight(w)
    allowed = {-1, 0, 1} if q.weight_format == "ternary" else {-1, 1}
    assert set(np.unique(qw.codes).tolist()) <= allowed
    assert qw.codes.shape == w.shape and qw.codes.dtype == np.int8
    assert qw.scale.shape == ((w.shape[0],) if q.granularity == "row" else ())
    assert np.all(qw.scale > 0)
    nonzero = qw.codes != 0  # a nonzero code always has the weight's sign (zero weights give 0 or +1)
    assert np.all((np.sign(w[nonzero]) == qw.codes[nonzero]) | (w[nonzero] == 0))


@settings(max_examples=40, deadline=None)
@given(w=matrices)
def test_liu_row_scales_are_row_means(w):
    means = np.abs(w.astype(np.float64)).mean(axis=1)
    np.testing.assert_array_equal(get_quantizer("liu-binary").quantize_weight(w).scale,
                                  np.maximum(means, EPS).astype(F32))
    np.testing.assert_array_equal(get_quantizer("liu-ternary").quantize_weight(w).scale,
                                  np.maximum(4 / 3 * means, EPS).astype(F32))


# --- activations ---------------------------------------------------------------------------------------------

def test_activation_known_values():
    codes, scale = quantize_activation_int8(np.array([0.5, -1.0, 0.25]))
    assert scale.shape == () and scale == F32(127.0)
    assert codes.dtype == np.int8 and codes.tolist() == [64, -127, 32]  # 63.5 rounds half to even
    codes, scale = quantize_activation_int8(np.array([[2.0, -1.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(scale, np.array([63.5, 127 / EPS], F32))
    assert codes.tolist() == [[127, -64], [0, 0]]  # -63.5 -> -64 (even)


@settings(max_examples=80, deadline=None)
@given(x=vectors)
def test_activation_round_trip(x):
    codes, scale = quantize_activation_int8(x)
    assert codes.dtype == np.int8 and codes.shape == x.shape and scale.dtype == np.float32
    assert scale.shape == x.shape[:-1]
    s = scale.astype(np.float64)[..., None]
    err = np.abs(x.astype(np.float64) - codes / s)
    assert np.all(err <= 0.5 / s * (1 + 1e-9))
    assert np.all(np.abs(codes) <= 127)  # absmax scaling never needs -128


# --- integer reference ---------------------------------------------------------------------------------------

def test_int_gemv_exact():
    rng = np.random.default_rng(0)
    w = rng.integers(-1, 2, size=(16, 4096)).astype(np.int8)
    x = rng.integers(-128, 128, size=4096).astype(np.int8)
    w[0] = 1
    x[:] = 127  # a sum far past int16: catches narrow accumulation
    got = int_gemv(w, x)
    assert got.dtype == np.int64 and got.shape == (16,)
    np.testing.assert_array_equal(got, w.astype(np.int64) @ x.astype(np.int64))
    assert got[0] == 127 * 4096
    xs = rng.integers(-128, 128, size=(3, 4096)).astype(np.int8)
    np.testing.assert_array_equal(int_gemv(w, xs), xs.astype(np.int64) @ w.astype(np.int64).T)
    with pytest.raises(ValueError):
        int_gemv(w, x[:10])
    with pytest.raises(TypeError):
        int_gemv(w.astype(F32), x)


def _reference_linear(w, x, name):
    """Everything by hand in Python floats and ints, sharing no code with the module."""
    rows, cols = len(w), len(w[0])
    if name == "bitnet":
        g = sum(abs(v) for r in w for v in r) / (rows * cols) + EPS
        scales = [float(F32(g))] * rows
    else:
        factor = 4 / 3 if name == "liu-ternary" else 1.0
        scales = [float(F32(max(factor * sum(abs(v) for v in r) / cols, EPS))) for r in w]

    def code(v, a):
        if name == "liu-binary":
            return 1 if v >= 0 else -1
        return max(-1, min(1, round(v / a)))  # Python round is half-to-even too

    amax = max(abs(v) for v in x)
    s = float(F32(127 / max(amax, EPS)))
    xq = [max(-128, min(127, round(v * s))) for v in x]
    out = []
    for i in range(rows):
        acc = sum(code(w[i][j], scales[i]) * xq[j] for j in range(cols))
        out.append(acc * scales[i] / s)
    return np.array(out, np.float64)


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_quantized_linear_matches_reference(name):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(7, 24)).astype(F32)
    x = rng.normal(size=24).astype(F32)
    q = get_quantizer(name)
    y = quantized_linear(q.quantize_weight(w), x, name)
    assert y.dtype == np.float32 and y.shape == (7,)
    ref = _reference_linear(w.astype(np.float64).tolist(), x.astype(np.float64).tolist(), name)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-7)
    # and batched: each token on its own
    xs = rng.normal(size=(3, 24)).astype(F32)
    ys = quantized_linear(q.quantize_weight(w), xs, q)
    assert ys.shape == (3, 7)
    for t in range(3):
        np.testing.assert_array_equal(ys[t], quantized_linear(q.quantize_weight(w), xs[t], q))


def test_quantized_linear_close_to_float():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(64, 256))
    x = rng.normal(size=256)
    qw = get_quantizer("bitnet").quantize_weight(w)
    y = quantized_linear(qw, x, "bitnet")
    np.testing.assert_allclose(y, qw.dequantize().astype(np.float64) @ x, rtol=0.05, atol=0.05 * np.abs(y).max())


# --- torch fake quantization ---------------------------------------------------------------------------------

def _np_fake_linear(x, qw, bias):
    codes, scale = quantize_activation_int8(x)
    xd = codes.astype(F32) / scale[..., None]
    y = xd.astype(np.float64) @ qw.dequantize().astype(np.float64).T
    return y + (0 if bias is None else bias.astype(np.float64))


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_fake_quantize_sequential(name):
    torch = pytest.importorskip("torch")
    from pimsim.workloads.quantize import fake_quantize_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4, bias=False))
    orig = copy.deepcopy(model)
    x = torch.randn(5, 8)
    model, replaced = fake_quantize_model(model, name)
    assert replaced == ["0", "2"]
    assert all(type(model[i]).__name__ == "FakeQuantLinear" for i in (0, 2))
    q = get_quantizer(name)
    w0, w2 = (q.quantize_weight(orig[i].weight) for i in (0, 2))
    h = np.maximum(_np_fake_linear(x.numpy(), w0, orig[0].bias.detach().numpy()), 0)
    want = _np_fake_linear(h.astype(F32), w2, None)
    with torch.no_grad():
        got = model(x)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model[0].codes.numpy(), w0.codes)
    np.testing.assert_array_equal(model[0].weight.numpy(), w0.dequantize())


def test_fake_quantize_exclude_and_root():
    torch = pytest.importorskip("torch")
    from pimsim.workloads.quantize import fake_quantize_model

    seq = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    _, replaced = fake_quantize_model(seq, "bitnet", exclude={"1"})
    assert replaced == ["0"] and isinstance(seq[1], torch.nn.Linear)
    seq = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    _, replaced = fake_quantize_model(seq, "bitnet", exclude=lambda n: n == "0")
    assert replaced == ["1"]
    lin = torch.nn.Linear(4, 3)
    new, replaced = fake_quantize_model(lin, "liu-binary")
    assert replaced == [""] and new.out_features == 3 and new.in_features == 4
    with pytest.raises(ValueError, match="known"):
        fake_quantize_model(torch.nn.Linear(2, 2), "nope")


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_fake_quantize_gpt2(name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    from pimsim.workloads.quantize import fake_quantize_model

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ref = copy.deepcopy(model)
    ids = torch.randint(0, 64, (2, 7))
    model, replaced = fake_quantize_model(model, name)
    assert replaced == ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
                        "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"]
    assert isinstance(model.lm_head, torch.nn.Linear)  # the LM head stays in high precision

    # the reference keeps its Conv1D layers: weights swapped for dequantized ones (transposed back to
    # (in, out)) and inputs fake-quantized by a hook written in numpy
    q = get_quantizer(name)

    def hook(module, args):
        (x,) = args
        codes, scale = quantize_activation_int8(x.reshape(-1, x.shape[-1]).numpy())
        return (torch.from_numpy(codes.astype(F32) / scale[:, None]).reshape(x.shape),)

    for name in replaced:
        conv = ref.get_submodule(name)
        assert isinstance(conv, Conv1D)
        qw = q.quantize_weight(conv.weight.detach().T)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(qw.dequantize().T.copy()))
        conv.register_forward_pre_hook(hook)
        np.testing.assert_array_equal(model.get_submodule(name).codes.numpy(), qw.codes)
    with torch.no_grad():
        got, want = model(ids).logits, ref(ids).logits
    assert got.shape == (2, 7, 64)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
