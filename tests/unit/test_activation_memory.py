"""Lean training (the default, ``models/lean.py``) saves ~0.6x of plain autograd's activations:
LayerNorm fused into the following Linear(s) and into the MLP (input and statistics kept, the
normalized tensor rebuilt in backward), GELU's output rebuilt, q projected apart from k|v where
q is pooled, uint8 max-pool member indices.

Gradients equal plain autograd's (``set_lean_training(False)``): the same ops on the same inputs,
so only GEMM rounding differs (and the split q / k|v GEMM of a pooling block, whose output is
the same dot products). Bound: every output and gradient within 2e-5 of its own scale
(``max|diff| / max|plain|``), the fp32 rule of docs "Numerical tolerances" (fp32 GEMM rounding is
~1e-7 relative per product; oneDNN and MKL pick different kernels on Xeon and EPYC, AVX2 and
AVX-512, which moves it by that order; measured here <= 9e-7); under bf16 autocast both paths
round to bf16. Max-pool gradients are exact (the same member indices, ties included). The saving
is counted, not timed: bytes of the distinct storages autograd saves (``tools/benchmark.py``),
on fake tensors for the detection-size targets.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from tool_scripts import load_tool
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from hiera_backbones import build_backbone
from hiera_backbones.models.hieradet import HieraDetBlock
from hiera_backbones.models.layers import Block
from hiera_backbones.models.lean import max_members, norm_linear, norm_mlp

benchmark = load_tool("benchmark")

FP32_BOUND = 2e-5


def _grads(model: torch.nn.Module, x: torch.Tensor, lean: bool, autocast=None):
    model.set_lean_training(lean)
    assert all(m.lean_training is lean for m in model.modules() if hasattr(m, "lean_training"))
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast is not None):
        outs = model(x)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    # Weighted, so that every output element has its own gradient.
    loss = sum((o.float() * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)
    loss.backward()
    grads = {"input": x.grad}
    grads.update({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    return [o.detach() for o in outs], grads


def _scale_errors(got: dict, ref: dict) -> dict[str, float]:
    assert got.keys() == ref.keys()
    return {name: ((got[name] - ref[name]).abs().max() / ref[name].abs().max().clamp_min(1e-30))
            .item() for name in ref}


def _assert_close_to_scale(got: dict, ref: dict, bound: float) -> None:
    errors = _scale_errors(got, ref)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= bound, f"{worst}: {errors[worst]:.2e} of the gradient's scale"


@pytest.mark.parametrize("name, shape, checkpointing", [
    ("hiera_tiny_224", (2, 3, 64, 96), False),
    ("hiera_tiny_224", (2, 3, 64, 64), True),
    ("hiera_small_abswin_256", (2, 3, 64, 64), False),  # LayerScale
    ("hvt_ti_1", (2, 3, 64, 64), False),
    ("sam2_hiera_tiny", (1, 3, 128, 96), False),  # 14-token windows on a 8x6 grid: padded
    ("hiera_base_16x224", (1, 3, 4, 64, 64), False),
])
def test_lean_gradients_equal_plain_autograd(name, shape, checkpointing):
    # Drop path draws the same masks in both runs (same seed).
    model = build_backbone(name, input_size=shape[2:], drop_path_rate=0.1)
    model.set_grad_checkpointing(checkpointing)
    model.train()
    x = torch.randn(*shape)
    torch.manual_seed(1)
    outs, ref = _grads(model, x, lean=False)
    torch.manual_seed(1)
    outs_lean, got = _grads(model, x, lean=True)
    _assert_close_to_scale(dict(enumerate(outs_lean)), dict(enumerate(outs)), FP32_BOUND)
    _assert_close_to_scale(got, ref, FP32_BOUND)


def test_gradients_under_bf16_autocast_are_as_accurate_as_plain_autograd():
    """Under bf16 autocast both paths round to bf16 (8-bit mantissa) in different GEMM orders,
    so they differ by bf16 rounding; neither is the reference. Judged against the fp32
    gradients, tensor by tensor: measured (AMD EPYC) median error ~1.6e-2 of the scale for both;
    the worst tensor (a gradient that nearly cancels at random init) depends on the thread
    count's summation order (0.27 with 2 threads, 0.61 with 1), the same for both paths. Bounds:
    the median of plain's errors between 1e-3 and 5e-2 (bf16 rounding, no more; the worst tensor
    is no bound), each tensor of ours within 1.5x plain's error + 5e-3, and ours' median within
    1.1x plain's."""
    model = build_backbone("hiera_tiny_224")
    x = torch.randn(2, 3, 64, 64)
    _, fp32 = _grads(model, x, lean=False)
    _, plain = _grads(model, x, lean=False, autocast=torch.bfloat16)
    _, ours = _grads(model, x, lean=True, autocast=torch.bfloat16)
    for name in ours:
        assert ours[name].dtype == plain[name].dtype == torch.float32  # parameters' own dtype
    err_plain, err_ours = _scale_errors(plain, fp32), _scale_errors(ours, fp32)
    median_plain = sorted(err_plain.values())[len(err_plain) // 2]
    assert 1e-3 < median_plain < 5e-2  # bf16 rounding, no more
    for name in ours:
        assert err_ours[name] <= 1.5 * err_plain[name] + 5e-3, (name, err_ours[name],
                                                                err_plain[name])
    assert sorted(err_ours.values())[len(err_ours) // 2] <= 1.1 * median_plain


def test_lean_functions_pass_gradcheck_in_float64():
    """Exact gradients (finite differences in float64) of the three functions, including a
    rearrangement that pads (HieraDet's windows) and a Linear without bias. The functions read
    only ``weight`` / ``bias`` / ``eps`` of the layers they are given."""
    torch.manual_seed(0)

    def f64(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    def norm(weight, bias):
        return SimpleNamespace(weight=weight, bias=bias, eps=1e-5)

    def linear(weight, bias):
        return SimpleNamespace(weight=weight, bias=bias)

    def pad_and_flip(t: torch.Tensor) -> torch.Tensor:  # zero tokens appended, order reversed
        return F.pad(t, (0, 0, 0, 2)).flip(1)

    x, nw, nb = f64(2, 5, 6), f64(6), f64(6)
    w1, b1, w2 = f64(4, 6), f64(4), f64(3, 6)
    assert torch.autograd.gradcheck(
        lambda x, nw, nb, w1, b1, w2: norm_linear(
            x, norm(nw, nb), [(w1, b1, None), (w2, None, pad_and_flip)]),
        (x, nw, nb, w1, b1, w2))
    fc1, fc2 = (f64(24, 6), f64(24)), (f64(6, 24), f64(6))
    for approximate in ("none", "tanh"):
        def mlp(x, nw, nb, w1, b1, w2, b2, approximate=approximate):
            return norm_mlp(x, norm(nw, nb), linear(w1, b1), linear(w2, b2), approximate)

        assert torch.autograd.gradcheck(mlp, (x, nw, nb, *fc1, *fc2))
    y = f64(3, 4, 5)
    assert torch.autograd.gradcheck(lambda y: max_members(y, 1), (y,))


def test_max_pool_gradients_are_exact_on_ties():
    """uint8 member indices give plain ``max``'s and ``max_pool2d``'s gradients bit for bit,
    ties (integer-valued inputs) included: the first maximal member gets the gradient."""
    x = torch.randint(0, 3, (2, 6, 4, 5), dtype=torch.float32, requires_grad=True)
    grad = torch.randn(2, 4, 5)
    (ours,) = torch.autograd.grad(max_members(x, 1), x, grad)
    (plain,) = torch.autograd.grad(x.max(1).values, x, grad)
    assert torch.equal(ours, plain)
    block = HieraDetBlock(8, 16, num_heads=2, window_size=4, q_stride=(2, 2))
    grid = torch.randint(0, 3, (2, 8, 6, 16), dtype=torch.float32, requires_grad=True)
    grad = torch.randn(2, 4, 3, 16)
    (ours,) = torch.autograd.grad(block._pool(grid, lean=True), grid, grad)
    (plain,) = torch.autograd.grad(block._pool(grid), grid, grad)
    assert torch.equal(block._pool(grid, lean=True), block._pool(grid))
    assert torch.equal(ours, plain)


def test_frozen_and_biasless_layers():
    """Frozen LayerNorm / Linear weights get no gradient; a ``qkv`` without bias; the rest as
    plain autograd."""
    block = Block(16, 32, num_heads=2, q_stride=4, window_size=2, use_mask_unit_attn=True,
                  qkv_bias=False)
    block.norm1.requires_grad_(False)
    block.mlp.fc1.weight.requires_grad_(False)
    x = torch.randn(2, 32, 16)
    grads = {}
    for lean in (False, True):
        block.lean_training = lean
        block.zero_grad(set_to_none=True)
        assert block._lean(x) is lean
        (block(x) * torch.linspace(-1, 1, 2 * 8 * 32).view(2, 8, 32)).sum().backward()
        grads[lean] = {n: p.grad for n, p in block.named_parameters() if p.grad is not None}
    assert "norm1.weight" not in grads[True] and "mlp.fc1.weight" not in grads[True]
    assert "mlp.fc1.bias" in grads[True]
    _assert_close_to_scale(grads[True], grads[False], FP32_BOUND)


def test_plain_ops_where_they_are_read():
    """Inference, tracing (FLOP counters, exporters), hooks and swapped layers take plain ops."""
    block = Block(8, 8, num_heads=2)
    x = torch.randn(2, 4, 8)
    assert block._lean(x)  # parameters need gradients: training
    with torch.no_grad():
        assert not block._lean(x)
    block.lean_training = False
    assert not block._lean(x)
    block.lean_training = True
    handle = block.norm1.register_forward_hook(lambda *args: None)
    assert not block._lean(x)  # a feature hook must run
    handle.remove()
    handle = nn.modules.module.register_module_forward_hook(lambda *args: None)
    assert not block._lean(x)  # global hooks too
    handle.remove()
    assert block._lean(x)

    class LoRALinear(nn.Linear):
        pass

    swapped = Block(8, 8, num_heads=2)
    swapped.attn.qkv = LoRALinear(8, 24)
    assert not swapped._lean(x)
    swapped = Block(8, 8, num_heads=2, act_layer=nn.ReLU)
    assert not swapped._lean(x)
    swapped = Block(8, 8, num_heads=2, norm_layer=nn.RMSNorm)
    assert not swapped._lean(x)
    traced = torch.jit.trace(block, x)  # traced under grad mode: the plain ops are recorded
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "prim::PythonOp" not in kinds and {"aten::gelu", "aten::layer_norm"} <= kinds


def test_second_derivatives_need_plain_autograd():
    """The lean functions are differentiable once: a second derivative raises instead of being
    silently wrong; with lean training off it is plain autograd's (with the math attention
    kernel: the fused CPU kernels have no second derivative either)."""
    model = build_backbone("hvt_ti_1", input_size=(32, 32))
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    with sdpa_kernel(SDPBackend.MATH):
        (grad,) = torch.autograd.grad(model(x)[-1].square().sum(), x, create_graph=True)
        with pytest.raises(RuntimeError, match="once_differentiable"):
            grad.square().sum().backward()
        model.set_lean_training(False)
        (grad,) = torch.autograd.grad(model(x)[-1].square().sum(), x, create_graph=True)
        grad.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _saved_bytes(module, x, lean: bool) -> float:
    module.set_lean_training(lean) if hasattr(module, "set_lean_training") else setattr(
        module, "lean_training", lean)
    return benchmark.saved_for_backward_mb(module, module, x) * 2**20


def test_a_block_saves_six_widths_per_token_fewer():
    """Exactly LayerNorm's two outputs (the qkv and fc1 inputs, 1 width each) and GELU's output
    (4 widths) fewer per token; a pooling block also frees the unpooled q (dim_out per input
    token)."""
    block = Block(dim=32, dim_out=32, num_heads=2)
    x = torch.randn(2, 64, 32)
    assert _saved_bytes(block, x, False) - _saved_bytes(block, x, True) == 2 * 64 * 6 * 32 * 4
    pooling = Block(dim=32, dim_out=64, num_heads=2, q_stride=4, window_size=4,
                    use_mask_unit_attn=True)
    per_input_token = 32 + 64  # norm1's output, the unpooled q
    per_output_token = 4 * 64 + 64  # GELU's output, norm2's output
    expected = 2 * (64 * per_input_token + 16 * per_output_token) * 4
    assert _saved_bytes(pooling, x, False) - _saved_bytes(pooling, x, True) == expected


def test_hiera_saves_less_than_timm_and_official():
    """Counted on every machine alike. Measured (Hiera-T, 224, batch 1, fp32): lean 54.2 MiB,
    plain 86.8 (88.9 before its max-pool indices were uint8); timm 105.8, official 98.6."""
    x = torch.randn(1, 3, 224, 224)
    saved = {}
    for impl in ("ours", "ours-plain", "timm", "official"):
        model, fn = benchmark.build(impl, "hiera_tiny_224", (224, 224))
        saved[impl] = benchmark.saved_for_backward_mb(model, fn, x)
    assert saved["ours"] == pytest.approx(54.2, abs=0.5)
    assert saved["ours-plain"] == pytest.approx(86.8, abs=0.5)
    assert saved["ours"] / saved["timm"] < 0.6 and saved["ours"] / saved["official"] < 0.6


@pytest.mark.parametrize("name, size, timm_mib, bound", [
    # Measured lean / timm (MiB): Hiera-B 2066 / 3824, SAM 2 B+ 2500 / 4189, video 795 / 1469.
    ("hiera_base_224", (1024, 1024), 3824, 0.55),
    ("sam2_hiera_base_plus", (1024, 1024), 4189, 0.60),
    ("hiera_base_16x224", (16, 224, 224), 1469, 0.55),
])
def test_detection_and_video_sizes_save_at_most_0_6x_timm(name, size, timm_mib, bound):
    """The goal sizes, counted on fake tensors (no memory, no compute: the same bytes as a real
    run, tests/unit/test_benchmark.py). timm at video: its ``Hiera`` class built with the
    official video configuration (``benchmark._timm_video``)."""
    x = torch.randn(1, 3, *size)
    saved = {}
    for impl in ("ours", "timm"):
        model, fn = benchmark.build(impl, name, size)
        model.train()
        saved[impl] = benchmark.saved_for_backward_mb(model, fn, x, fake=True)
    assert saved["timm"] == pytest.approx(timm_mib, abs=1)
    assert saved["ours"] / saved["timm"] <= bound


def test_torch_func_transforms_take_the_plain_ops():
    """``torch.func.grad`` / ``vmap`` transform the plain ops (custom autograd functions and
    oneDNN's fused ops have no transform rules): gradients equal ``backward``'s (lean) within
    the fp32 rule, and a vmapped inference equals the per-sample one."""
    model = build_backbone("hiera_tiny_224", input_size=(64, 64)).train()
    x = torch.randn(1, 3, 64, 64)
    params = {k: v.detach() for k, v in model.named_parameters()}
    grads = torch.func.grad(lambda p: torch.func.functional_call(model, p, (x,))[-1].sum())(params)
    model(x)[-1].sum().backward()
    _assert_close_to_scale(grads, {k: p.grad for k, p in model.named_parameters()}, FP32_BOUND)
    model.eval()
    batch = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        mapped = torch.func.vmap(lambda t: model(t.unsqueeze(0))[-1].squeeze(0))(batch)
        single = torch.stack([model(t.unsqueeze(0))[-1].squeeze(0) for t in batch])
    torch.testing.assert_close(mapped, single, rtol=0, atol=2e-5 * single.abs().max().item())
