"""frozen_stages (models, MMDetection, MMAction2) and freeze_at (detectron2): frozen weights get no
gradient, stay bit-identical through an optimizer step with weight decay, and stay in eval mode."""

from __future__ import annotations

import pytest
import torch

from hiera_backbones import build_backbone

SMALL = dict(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1))


def _step(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """One AdamW step (weight decay on) of ``sum(maps)``; returns the weights before it."""
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=0.1, weight_decay=0.1)
    outs = model(x)
    outs = outs.values() if isinstance(outs, dict) else outs
    outs = [outs] if isinstance(outs, torch.Tensor) else outs
    sum(o.float().square().mean() for o in outs).backward()
    optimizer.step()
    return before


def _check_frozen(model: torch.nn.Module, before: dict, frozen_prefixes: tuple[str, ...]) -> None:
    after = model.state_dict()
    params = dict(model.named_parameters())
    frozen = [k for k in params if k.startswith(frozen_prefixes)]
    trained = [k for k in params if not k.startswith(frozen_prefixes)]
    assert frozen and trained
    for k in frozen:
        assert params[k].grad is None and not params[k].requires_grad, k
        assert torch.equal(after[k], before[k]), k
    assert all(params[k].grad is not None for k in trained)
    assert any(not torch.equal(after[k], before[k]) for k in trained)


def _frozen_prefixes(model, frozen_stages: int) -> tuple[str, ...]:
    prefixes = ["patch_embed.", "pos_embed"]
    if frozen_stages > 0:
        last = model.stage_blocks[frozen_stages - 1]
        prefixes += [f"blocks.{i}." for i in range(last + 1)]
        prefixes += [f"out_norms.{i}." for i in range(frozen_stages)]
    return tuple(prefixes)


@pytest.mark.parametrize("frozen_stages", [0, 1, 2])
def test_hiera_frozen_stages(frozen_stages):
    torch.manual_seed(0)
    model = build_backbone("hiera_tiny_224", **SMALL, input_size=(64, 64), out_norm=True,
                           drop_path_rate=0.3, frozen_stages=frozen_stages)
    before = _step(model, torch.randn(2, 3, 64, 64))
    _check_frozen(model, before, _frozen_prefixes(model, frozen_stages))
    model.train()
    frozen_blocks = model.stage_blocks[frozen_stages - 1] + 1 if frozen_stages else 0
    assert [b.training for b in model.blocks] == [
        i >= frozen_blocks for i in range(len(model.blocks))]
    assert not model.patch_embed.training


def test_hvt_video_frozen_stages_and_errors():
    torch.manual_seed(0)
    model = build_backbone("hvt_s_4", embed_dim=32, num_heads=2, depth=4, pool_block_width=2,
                           pooling="2d", video=True, input_size=(4, 64, 64), frozen_stages=1)
    before = _step(model, torch.randn(1, 3, 4, 64, 64))
    _check_frozen(model, before, ("patch_embed.", "pos_embed", "blocks.0."))
    with pytest.raises(ValueError, match=r"frozen_stages=5 must be in \[-1, 4\]"):
        build_backbone("hiera_tiny_224", **SMALL, frozen_stages=5)


def test_mmdet_frozen_stages():
    pytest.importorskip("mmdet")
    from mmengine.registry import DefaultScope

    from hiera_backbones import mmdet

    torch.manual_seed(0)
    # Built through MMDetection's registry (under its scope: another test may have left
    # MMAction2's, whose "Hiera" is the video backbone).
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = mmdet.MODELS.build(dict(type="Hiera", arch="hiera_tiny_224", **SMALL,
                                        input_size=(64, 64), frozen_stages=1))
    assert isinstance(model, mmdet.Hiera)
    before = _step(model, torch.randn(1, 3, 64, 64))
    _check_frozen(model, before, _frozen_prefixes(model, 1))


def test_mmaction_frozen_stages():
    pytest.importorskip("mmaction")
    from mmengine.registry import DefaultScope

    from hiera_backbones import mmaction

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mmaction"):
        model = mmaction.MODELS.build(dict(type="Hiera", embed_dim=16, num_heads=1,
                                           stages=(1, 1, 2, 1), input_size=(4, 64, 64),
                                           out_indices=(3,), frozen_stages=2))
    assert isinstance(model, mmaction.Hiera)
    before = _step(model, torch.randn(1, 3, 4, 64, 64))
    _check_frozen(model, before, _frozen_prefixes(model, 2))


def test_detectron2_freeze_at():
    pytest.importorskip("detectron2")
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone as d2_build_backbone

    from hiera_backbones.detectron2 import D2Hiera, add_hiera_config

    torch.manual_seed(0)
    model = D2Hiera("hiera_tiny_224", input_size=(64, 64), freeze_at=2, **SMALL)
    assert model.frozen_stages == 1  # the stem (embeddings) and res2
    before = _step(model, torch.randn(1, 3, 64, 64))
    _check_frozen(model, before, _frozen_prefixes(model, 1))

    cfg = add_hiera_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "D2Hiera"
    cfg.MODEL.HIERA.update(ARCH="hiera_tiny_224", INPUT_SIZE=[64, 64], FREEZE_AT=1)
    yacs = d2_build_backbone(cfg)
    assert yacs.frozen_stages == 0
    assert {n for n, p in yacs.named_parameters() if not p.requires_grad} == {
        "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    with pytest.raises(ValueError, match="freeze_at=-1"):
        D2Hiera("hiera_tiny_224", input_size=(64, 64), freeze_at=-1)
