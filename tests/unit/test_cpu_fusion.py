"""The fused CPU inference path (oneDNN linear + bias/GELU/residual) against the plain path.

The plain path is the one tested against the official model with autograd on; here the fused
path must give the same numbers, really run when it should, and step aside whenever it could
change behaviour (autograd, hooks, wrapped layers, flop counters, stochastic depth, tracers).

"The same numbers" means within :data:`~hiera_backbones.parity.FP32_RTOL` of the map's scale.
The fused and plain paths differ only in rounding: oneDNN and MKL sum each GEMM's K dimension in
differently blocked orders (which also change between AVX2 and AVX-512 kernels), and oneDNN's
GELU epilogue is a few ulps from PyTorch's erf. Those per-op errors are relative to the values
summed; the residual stream adds them up block after block, so the *absolute* difference scales
with the map: ~1e-6 relative everywhere, i.e. 1.8e-5 absolute on the sharpened video model
whose maps reach |x| ~ 21 (an absolute 2e-5 bound failed there on AMD Zen 4).
:func:`test_fused_error_against_fp64_is_fp32_rounding` shows both paths have the same error
against an fp64 run.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
from helpers import sharpen_
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hiera_backbones import build_backbone
from hiera_backbones.models import cpu_fusion, hieradet, layers
from hiera_backbones.parity import FP32_RTOL, assert_maps_close, max_relative_error

pytestmark = pytest.mark.skipif(
    not cpu_fusion.cpu_fusion_available(), reason="this PyTorch build has no oneDNN fused ops"
)


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts calls of the fused linear kernel made by the shared layers."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[1])
        return cpu_fusion.fused_linear(*args, **kwargs)

    monkeypatch.setattr(layers, "fused_linear", counting)
    monkeypatch.setattr(hieradet, "fused_linear", counting)
    return calls


def _plain(model, x):
    with torch.no_grad(), cpu_fusion.cpu_fusion(False):
        return model(x)


def _hiera(name="hiera_tiny_224", **kwargs):
    torch.manual_seed(0)
    return sharpen_(build_backbone(name, **kwargs).eval())


@pytest.mark.parametrize(
    "name, shape",
    [
        ("hiera_tiny_224", (2, 3, 224, 224)),
        ("hiera_small_224", (1, 3, 256, 320)),
        ("hiera_base_16x224", (1, 3, 8, 160, 192)),
    ],
)
def test_fused_equals_plain(name, shape, fused_calls):
    kwargs = {"input_size": shape[2:]} if len(shape) == 5 else {}
    model = _hiera(name, **kwargs)
    x = torch.randn(shape)
    with torch.no_grad():
        fused = model(x)
    # 4 fused linears per block (qkv, proj, fc1, fc2) plus the 3 stage-transition projections
    # (more when a large q/k/v projection runs in chunks, as in the video case).
    assert len(fused_calls) >= 4 * len(model.blocks) + 3
    assert_maps_close(fused, _plain(model, x))


def test_fused_error_against_fp64_is_fp32_rounding():
    # The video model with q-pooling, sharpened weights: the case whose absolute error is largest.
    model = _hiera("hiera_base_16x224", input_size=(8, 160, 192), stages=(1, 1, 2, 1))
    x = torch.randn(1, 3, 8, 160, 192)
    with torch.no_grad():
        fused = model(x)
        exact = copy.deepcopy(model).double()(x.double())  # fp64 runs the plain path
    plain = _plain(model, x)
    fused_error, plain_error = max_relative_error(fused, exact), max_relative_error(plain, exact)
    # Measured 1.1e-6 (fused) and 1.2e-6 (plain) on the full model: both are fp32 rounding
    # (~20 ulps of the map's scale). The fused path may not be markedly less accurate.
    assert fused_error <= FP32_RTOL and plain_error <= FP32_RTOL
    assert fused_error <= 4 * plain_error


def test_self_check_leaves_the_global_rng_alone(monkeypatch):
    monkeypatch.setattr(cpu_fusion, "_self_check_passed", None)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert cpu_fusion._self_check() is True
    assert torch.equal(torch.rand(3), expected)


def test_chunked_large_inputs_equal_plain(monkeypatch, fused_calls):
    model = _hiera()
    x = torch.randn(2, 3, 224, 224)
    monkeypatch.setattr(layers, "_CHUNK_BYTES", 256 * 1024)  # forces many q/k/v and MLP chunks
    with torch.no_grad():
        fused = model(x)
    assert len(fused_calls) > 4 * len(model.blocks) + 3 + 20
    assert_maps_close(fused, _plain(model, x))


@pytest.mark.parametrize(
    "shape",
    [(1, 3, 256, 320), (2, 3, 128, 96)],
    ids=["padded-windows", "batch"],
)
def test_hieradet_fused_equals_plain(shape, fused_calls):
    """SAM 2 trunk: windows padded at stages 3 and 4 at 256x320 (window 14 on a 16x20 grid,
    7 on 8x10), the attention projection fused after the windows are put back."""
    torch.manual_seed(0)
    model = sharpen_(build_backbone("sam2_hiera_tiny").eval())
    x = torch.randn(shape)
    with torch.no_grad():
        fused = model(x)
    assert len(fused_calls) >= 4 * len(model.blocks) + 3
    assert_maps_close(fused, _plain(model, x))


def test_hvt_fused_equals_plain(fused_calls):
    torch.manual_seed(0)
    model = build_backbone("hvt_s_4", pooling="2d", input_size=(160, 192)).eval()
    x = torch.randn(2, 3, 160, 192)
    with torch.no_grad():
        fused = model(x)
    assert len(fused_calls) == 4 * len(model.blocks)
    assert_maps_close(fused, _plain(model, x))


def test_training_graph_uses_plain_path(fused_calls):
    model = _hiera().train()
    x = torch.randn(1, 3, 224, 224)
    outs = model(x)
    sum(o.mean() for o in outs).backward()
    assert fused_calls == []
    assert model.blocks[0].mlp.fc1.weight.grad is not None


def test_frozen_backbone_under_grad_mode_is_fused(fused_calls):
    model = _hiera().requires_grad_(False)
    x = torch.randn(1, 3, 224, 224)
    outs = model(x)  # grad mode on, but nothing needs a graph
    assert fused_calls
    assert not outs[0].requires_grad
    assert_maps_close(outs, _plain(model, x))


def test_hooks_on_sublayers_still_fire(fused_calls):
    model = _hiera()
    seen = []
    model.blocks[4].mlp.fc1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = model(x)
    assert seen == [torch.Size([1, 196, 1536])]  # Hiera-T block 4: stage 3, 384 -> 1536
    assert len(fused_calls) == 4 * (len(model.blocks) - 1) + 3  # only block 4 ran plain
    assert_maps_close(out, _plain(model, x))


def test_wrapped_linear_runs_its_own_forward(fused_calls):
    class Shifted(nn.Linear):  # e.g. a LoRA or quantized wrapper: its forward must run
        def forward(self, x):
            return super().forward(x) + 1.0

    model = _hiera()
    x = torch.randn(1, 3, 224, 224)
    before = _plain(model, x)
    old = model.blocks[2].attn.proj
    model.blocks[2].attn.proj = Shifted(old.in_features, old.out_features)
    model.blocks[2].attn.proj.load_state_dict(old.state_dict())
    with torch.no_grad():
        after = model(x)
    assert_maps_close(after, _plain(model, x))
    assert max_relative_error(after, before) > 0.1


def test_flop_counter_sees_every_linear():
    model = _hiera()
    x = torch.randn(1, 3, 224, 224)

    def macs(fusion: bool) -> int:
        with torch.no_grad(), cpu_fusion.cpu_fusion(fusion), FlopCounterMode(display=False) as c:
            model(x)
        return c.get_total_flops()

    assert macs(True) == macs(False) > 4e9  # Hiera-T at 224: 4.9 GMACs -> ~9.8 GFLOPs


def test_weight_updates_invalidate_reordered_weights():
    model = _hiera()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        model(x)  # caches reordered weights
        for p in model.parameters():
            p.mul_(0.9)  # in place, like an optimizer step
        fused = model(x)
    assert_maps_close(fused, _plain(model, x))
    other = _hiera()
    sharpen_(other, seed=3)
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        assert_maps_close(model(x), _plain(other, x))


def test_drop_path_in_training_mode_is_not_skipped(fused_calls):
    model = build_backbone("hiera_tiny_224", drop_path_rate=0.5).train()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert max_relative_error(a, b) > 1e-3  # stochastic depth still drops blocks
    assert len(fused_calls) == 2 * 4  # per forward, only block 0 (drop rate 0) may fuse


@pytest.mark.skipif(torch.bfloat16 not in cpu_fusion._fused_dtypes, reason="no oneDNN bf16")
def test_bf16_fused_close_to_plain():
    model = _hiera().to(torch.bfloat16)
    x = torch.randn(1, 3, 224, 224, dtype=torch.bfloat16)
    with torch.no_grad():
        fused = model(x)
    plain = _plain(model, x)
    # bf16 keeps 8 significant bits (unit roundoff 2**-8 ~ 4e-3) and both paths round every
    # intermediate to it; measured ~1 % of the map's scale, so 5 % only rejects real errors.
    assert_maps_close([a.float() for a in fused], [b.float() for b in plain], rtol=0.05)


def test_environment_switch_turns_fusion_off():
    code = "from hiera_backbones.models import cpu_fusion as c; print(c._enabled)"
    env = {**os.environ, "HIERA_BACKBONES_CPU_FUSION": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_broken_fused_ops_fall_back_with_one_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("mkldnn: unsupported post-op\nmore detail")

    monkeypatch.setattr(cpu_fusion, "_self_check_passed", None)
    monkeypatch.setattr(cpu_fusion, "fused_linear", broken)
    model = _hiera()
    x = torch.randn(1, 3, 224, 224)
    with pytest.warns(RuntimeWarning, match="fails \\(mkldnn: unsupported post-op\\)"):
        with torch.no_grad():
            out = model(x)
    assert cpu_fusion._self_check_passed is False
    assert max_relative_error(out, _plain(model, x)) == 0  # the plain path ran


def test_swapped_activation_is_used_by_the_fused_path():
    model = _hiera()
    x = torch.randn(1, 3, 224, 224)
    before = _plain(model, x)
    model.blocks[2].mlp.act = nn.ReLU()
    with torch.no_grad():
        fused = model(x)
    assert_maps_close(fused, _plain(model, x))
    assert max_relative_error(fused, before) > 1e-3


def test_first_call_under_inference_mode_is_fused(monkeypatch, fused_calls):
    # The self-check runs on the first fused call; under inference_mode (how benchmarks and
    # predictors run) it once failed on inference tensors and disabled fusion for the process.
    monkeypatch.setattr(cpu_fusion, "_self_check_passed", None)
    model = _hiera()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        fused = model(x)
    assert cpu_fusion._self_check_passed is True
    assert len(fused_calls) >= 4 * len(model.blocks)
    assert_maps_close(fused, _plain(model, x))


def test_model_built_under_inference_mode_is_fused(fused_calls):
    x = torch.randn(1, 3, 224, 224)
    reference = _plain(_hiera(), x)
    with torch.inference_mode():
        model = _hiera()  # inference-tensor weights: no version counter, so not cached
        assert model.blocks[0].attn.qkv.weight.is_inference()
        first = model(x)
        model.blocks[0].attn.qkv.weight.mul_(2)  # allowed in inference mode; must be seen
        second = model(x)
    assert len(fused_calls) >= 8 * len(model.blocks)
    assert_maps_close(first, reference)
    assert max_relative_error(second, first) > 1e-3
