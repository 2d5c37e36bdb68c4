"""The spatial position-embedding resize (``bicubic_resize``: two matmuls with the interpolation's
own weight matrices) is ``F.interpolate``'s bicubic map, plain and antialiased.

Errors are ``max |ours - ref| / max |ref|`` against ``F.interpolate`` in float64. In float32 the
bound is 2e-6: ``F.interpolate`` itself lands within 8.3e-7 of its float64 result on these
cases (a 4x4-tap sum of O(1) weights, rounding ~1e-7 per step, independent of the CPU's
kernels), and ours within the same; the bound leaves a 2x margin. In float64 both are the same
weights summed in another order: 1e-12."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hiera_backbones.models.pos_embed import (
    bicubic_matrix,
    bicubic_resize,
    resize_grid_pos_embed,
    resize_pos_embed,
)

FP32_RTOL = 2e-6
FP64_RTOL = 1e-12

# (h, w) -> (H, W): SAM 2 background at 1024 and at a non-square size, Hiera 224 -> 1024,
# abs-win backgrounds, downsampling, odd sizes, a 1-row grid.
CASES = [
    ((7, 7), (256, 256)),
    ((7, 7), (32, 20)),
    ((14, 14), (64, 64)),
    ((56, 56), (256, 256)),
    ((16, 16), (64, 64)),
    ((64, 64), (16, 16)),
    ((14, 14), (7, 9)),
    ((1, 5), (3, 8)),
]


def _reference(x: torch.Tensor, size, antialias: bool) -> torch.Tensor:
    return F.interpolate(
        x.double(), size=size, mode="bicubic", align_corners=False, antialias=antialias
    )


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("antialias", [False, True], ids=["bicubic", "antialiased"])
@pytest.mark.parametrize(("src", "dst"), CASES, ids=[f"{s}->{d}" for s, d in CASES])
def test_bicubic_resize_is_interpolate(src, dst, antialias):
    torch.manual_seed(0)
    x = torch.randn(2, 8, *src, dtype=torch.float64)
    ref = _reference(x, dst, antialias)
    assert _rel(bicubic_resize(x.float(), dst, antialias), ref) <= FP32_RTOL
    assert _rel(bicubic_resize(x, dst, antialias), ref) <= FP64_RTOL
    # The gradient (what training sees) is the transposed map: same check on a random
    # cotangent, float64.
    leaf_ours, leaf_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    cotangent = torch.randn_like(ref)
    (bicubic_resize(leaf_ours, dst, antialias) * cotangent).sum().backward()
    (_reference(leaf_ref, dst, antialias) * cotangent).sum().backward()
    assert _rel(leaf_ours.grad, leaf_ref.grad) <= FP64_RTOL


@pytest.mark.parametrize("antialias", [False, True])
def test_same_size_is_exactly_the_identity(antialias):
    """Traced with dynamic sizes, the resizers always resize: to the same size that must be the
    identity bit for bit (weights exactly 1 and 0)."""
    assert torch.equal(bicubic_matrix(9, 9, antialias), torch.eye(9))
    x = torch.randn(1, 4, 9, 6)
    assert torch.equal(bicubic_resize(x, (9, 6), antialias), x)


def test_matrix_rows_are_interpolation_weights():
    """Each output is a convex-like combination: rows sum to 1 (edge clamping folded in), and
    the matrix equals resizing one-hot images one by one."""
    matrix = bicubic_matrix(7, 20, dtype=torch.float64)
    assert torch.allclose(matrix.sum(1), torch.ones(20, dtype=torch.float64), atol=1e-12)
    for j in range(7):
        one_hot = torch.zeros(1, 1, 7, 1, dtype=torch.float64)
        one_hot[0, 0, j] = 1
        column = F.interpolate(one_hot, size=(20, 1), mode="bicubic", align_corners=False)
        assert torch.allclose(matrix[:, j], column.view(20), atol=1e-15)


def test_public_resizers_follow_the_rule_and_keep_dtype():
    torch.manual_seed(0)
    raster = torch.randn(1, 7 * 5, 16, dtype=torch.bfloat16)
    out = resize_pos_embed(raster, (7, 5), (12, 9))
    assert out.dtype == torch.bfloat16 and out.shape == (1, 12 * 9, 16)
    grid = raster.float().view(1, 7, 5, 16).permute(0, 3, 1, 2)
    ref = _reference(grid, (12, 9), False).permute(0, 2, 3, 1).reshape(1, -1, 16)
    assert _rel(out.float(), ref) <= 2**-8  # bfloat16 output: one rounding of the result
    grid_embed = torch.randn(1, 16, 7, 7)
    assert _rel(resize_grid_pos_embed(grid_embed, (32, 24), antialias=True),
                _reference(grid_embed, (32, 24), True)) <= FP32_RTOL
