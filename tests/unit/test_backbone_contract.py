"""What every backbone promises (the shared base in ``hiera_backbones.models.base``), checked for
Hiera and HVT in each of its modes: stopping early, output norms, activation checkpointing,
stochastic depth, autocast and low-precision weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from backbone_cases import build_case

from hiera_backbones.parity import FP32_RTOL, assert_maps_close, map_errors

MAP_BACKBONES = ["hiera", "hvt_2d"]  # those whose outputs are channel-first maps of any size
STAGE_1_2_REDUCTIONS = {"hiera": [8, 16], "hvt_2d": [32, 64]}  # patch 4 / 16, x2 per stage


@pytest.mark.parametrize("kind", MAP_BACKBONES)
def test_out_indices_subset_equals_full_output_and_stops_early(kind):
    full, x = build_case(kind)
    part, _ = build_case(kind, out_indices=(1, 2))
    part.load_state_dict(full.state_dict())
    calls = []
    hook = part.blocks[-1].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        a, b = part.eval()(x)
        ref = full.eval()(x)
    hook.remove()
    assert torch.equal(a, ref[1]) and torch.equal(b, ref[2])
    assert not calls, "the last stage ran although only stages 1-2 were requested"
    assert part.out_channels == [ref[1].shape[1], ref[2].shape[1]]
    assert [part.feature_info[i]["reduction"] for i in part.out_indices] == (
        STAGE_1_2_REDUCTIONS[kind]
    )
    assert [part.feature_info[i]["module"] for i in part.out_indices] == [
        full.feature_info[1]["module"], full.feature_info[2]["module"]]
    assert part.feature_info == full.feature_info  # every stage, whatever out_indices


@pytest.mark.parametrize("kind", MAP_BACKBONES)
def test_out_norm_is_layernorm_over_channels(kind):
    plain, x = build_case(kind)
    normed, _ = build_case(kind, out_norm=True)
    with torch.no_grad():
        for ln in normed.out_norms.values():
            ln.weight.normal_()
            ln.bias.normal_()
    normed.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        for i, (raw, out) in enumerate(zip(plain.eval()(x), normed.eval()(x))):
            ln = normed.out_norms[str(i)]
            ref = F.layer_norm(raw.movedim(1, -1), ln.normalized_shape, ln.weight, ln.bias, 1e-6)
            # The same LayerNorm kernel on the same values (only the layout differs).
            assert_maps_close([out], [ref.movedim(-1, 1)])


@pytest.mark.parametrize("kind", ["hiera", "hvt_1d", "hvt_2d"])
def test_gradient_checkpointing_gives_identical_gradients(kind):
    a, x = build_case(kind)
    b, _ = build_case(kind, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    for m in (a.train(), b.train()):
        sum(o.square().mean() for o in m(x)).backward()
    # Recomputation replays the same ops on the same values: rounding can differ only where
    # a kernel's summation order depends on memory layout, so the fp32 bound applies.
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert (pa.grad is None) == (pb.grad is None), name
        if pa.grad is not None:
            (error,) = map_errors([pb.grad], [pa.grad])
            assert error.rel <= FP32_RTOL, f"{name}: {error}"


@pytest.mark.parametrize("kind", ["hiera", "hvt_2d"])
def test_drop_path_is_active_in_training_only(kind):
    model, x = build_case(kind, drop_path_rate=0.5)
    model.train()
    torch.manual_seed(1)
    a = model(x)[-1]
    torch.manual_seed(2)
    b = model(x)[-1]
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[-1], model(x)[-1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["hiera", "hvt_1d", "hvt_2d"])
def test_autocast_low_precision_close_to_fp32(kind, dtype):
    model, x = build_case(kind)
    model.eval()
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=dtype):
            low = model(x)
    for r, lo in zip(ref, low):
        assert lo.dtype == dtype
        assert torch.isfinite(lo).all()
        # bf16 / fp16 keep 8 / 11 significant bits (unit roundoff 4e-3 / 5e-4); the autocast
        # GEMMs round their inputs, so a few blocks give ~0.5 % RMS error for bf16.
        rel = (lo.float() - r).norm() / r.norm()
        assert rel < 2e-2, f"relative error {rel:.3g}"


@pytest.mark.parametrize("kind", ["hiera", "hiera_video", "hvt_video"])
def test_bf16_weights_forward_and_backward(kind):
    model, x = build_case(kind)
    model = model.to(torch.bfloat16).train()
    outs = model(x.to(torch.bfloat16))
    assert all(o.dtype == torch.bfloat16 for o in outs)
    sum(o.float().mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g.float()).all() for g in grads)
