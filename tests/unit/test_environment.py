"""Smoke tests of the installed stack: each framework builds and runs its own stock model.

A broken install (mmcv ops, detectron2's Python package, MMAction2's wheel bug, torchvision's
compiled ops) fails here, in CI, instead of on a user's machine.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch


def test_torch_stack_versions_and_ops():
    import timm
    import torchvision
    from torchvision.ops import nms, roi_align

    assert torch.__version__.startswith("2.10.0")
    assert torchvision.__version__.startswith("0.25.0")
    assert timm.__version__.startswith("1.0.")
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]
    feats = torch.arange(16.0).view(1, 1, 4, 4)
    pooled = roi_align(feats, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], output_size=1, aligned=True)
    assert pooled.item() == pytest.approx(7.5)


def _d2_inputs(train: bool):
    from detectron2.structures import BitMasks, Boxes, Instances

    image = torch.rand(3, 96, 128) * 255
    item = {"image": image, "height": 96, "width": 128}
    if train:
        inst = Instances((96, 128))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 60.0, 50.0]]))
        inst.gt_classes = torch.tensor([3])
        masks = torch.zeros(1, 96, 128, dtype=torch.bool)
        masks[:, 10:50, 10:60] = True
        inst.gt_masks = BitMasks(masks)
        item["instances"] = inst
    return [item]


def test_detectron2_builds_and_runs_stock_mask_rcnn():
    from detectron2 import model_zoo
    from detectron2.config import instantiate

    cfg = model_zoo.get_config("common/models/mask_rcnn_fpn.py")
    cfg.model.roi_heads.num_classes = 5
    model = instantiate(cfg.model)
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage(0):
        losses = model(_d2_inputs(train=True))
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        out = model(_d2_inputs(train=False))
    assert out[0]["instances"].image_size == (96, 128)


def test_mmdet_builds_and_runs_stock_mask_rcnn():
    import mmcv.ops  # noqa: F401  compiled ops present
    import mmdet
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    path = os.path.join(
        os.path.dirname(mmdet.__file__), ".mim", "configs", "mask_rcnn",
        "mask-rcnn_r50_fpn_1x_coco.py",
    )
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None  # no download
    cfg.model.backbone.depth = 18
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    model = MODELS.build(cfg.model)
    model.init_weights()
    packed = demo_mm_inputs(2, image_shapes=[(3, 128, 160)] * 2, num_classes=80, with_mask=True)
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode="loss")
    assert {"loss_rpn_cls", "loss_cls", "loss_bbox", "loss_mask"} <= set(losses)
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(packed, False)
        results = model(**data, mode="predict")
    assert len(results) == 2 and hasattr(results[0], "pred_instances")


def test_mmaction_builds_and_runs_stock_recognizer():
    from hiera_backbones.compat import patch_mmaction_drn

    patch_mmaction_drn()
    import mmaction
    from mmaction.registry import MODELS
    from mmaction.structures import ActionDataSample
    from mmaction.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    path = os.path.join(
        os.path.dirname(mmaction.__file__), ".mim", "configs", "recognition", "slowonly",
        "slowonly_r50_8xb16-4x16x1-256e_kinetics400-rgb.py",
    )
    cfg = Config.fromfile(path)
    cfg.model.backbone.depth = 18
    cfg.model.backbone.pretrained = None
    cfg.model.cls_head.in_channels = 512
    model = MODELS.build(cfg.model)
    model.init_weights()
    inputs = [torch.randint(0, 255, (1, 3, 4, 64, 64), dtype=torch.uint8) for _ in range(2)]
    samples = [ActionDataSample().set_gt_label(i) for i in (3, 7)]
    data = model.data_preprocessor({"inputs": inputs, "data_samples": samples}, True)
    losses = model(**data, mode="loss")
    assert torch.isfinite(losses["loss_cls"])
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor({"inputs": inputs, "data_samples": samples}, False)
        preds = model(**data, mode="predict")
    assert preds[0].pred_score.shape == (400,)


def test_mmaction_drn_placeholder_fails_clearly():
    from hiera_backbones.compat import patch_mmaction_drn

    patch_mmaction_drn()
    import mmaction.models  # noqa: F401  must import despite the wheel bug
    from mmaction.registry import MODELS

    if sys.modules["mmaction.models.localizers.drn"].__dict__.get("__path__"):
        pytest.skip("this mmaction2 has the real DRN (source install)")

    with pytest.raises(RuntimeError, match="mmaction2#2714"):
        MODELS.build(dict(type="DRN"))
