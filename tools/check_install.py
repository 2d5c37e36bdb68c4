"""Checks one framework adapter in the current environment: imports it, builds the full model of
one of this repository's small configs, and runs a training step's forward and backward and an
inference forward on a small random input (CPU, seconds). Prints one line; exit status 1 and one
``error:`` line if anything fails.

    python tools/check_install.py mmdet        # configs/mmdet/mask-rcnn_hiera-mini_fpn_...py
    python tools/check_install.py mmaction     # configs/mmaction/hiera-mini_scratch_1xb8-...py
    python tools/check_install.py detectron2   # configs/detectron2/mask_rcnn_hiera_demo_shapes.py

``requirements/check_extras.sh`` runs it in a fresh virtual environment per extra.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
SIZE = 64  # the mini configs' input size; a multiple of 32, as Hiera needs


def _stage_shapes(feats) -> str:
    feats = feats if isinstance(feats, (tuple, list)) else [feats]
    return " ".join("x".join(map(str, f.shape[1:])) for f in feats)


def check_mmdet() -> str:
    import mmdet
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    # Config.fromfile runs the config's custom_imports: `import hiera_backbones.mmdet`.
    cfg = Config.fromfile(os.path.join(CONFIGS, "mmdet", "mask-rcnn_hiera-mini_fpn_coco-shapes.py"))
    init_default_scope(cfg.get("default_scope", "mmdet"))  # as mmengine's Runner does
    model = MODELS.build(cfg.model)
    packed = demo_mm_inputs(2, image_shapes=[(3, SIZE, SIZE)] * 2, num_classes=3, with_mask=True)
    losses = model(**model.data_preprocessor(packed, True), mode="loss")
    sum(v for k, v in losses.items() if "loss" in k and torch.is_tensor(v)).backward()
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(packed, False)
        feats = model.backbone(data["inputs"])
        preds = model(**data, mode="predict")  # RoIAlign: mmcv's compiled ops
    assert len(preds) == 2 and hasattr(preds[0], "pred_instances")
    return f"mmdet {mmdet.__version__}: Hiera Mask R-CNN, stages {_stage_shapes(feats)}"


def check_mmaction() -> str:
    import decord  # noqa: F401  (the configs' video reader)
    import mmaction
    from mmaction.registry import MODELS
    from mmaction.structures import ActionDataSample
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    # Config.fromfile runs the config's custom_imports: `import hiera_backbones.mmaction`.
    name = "hiera-mini_scratch_1xb8-8x2x1-15e_motion-shapes-rgb.py"
    cfg = Config.fromfile(os.path.join(CONFIGS, "mmaction", name))
    init_default_scope(cfg.get("default_scope", "mmaction"))  # as mmengine's Runner does
    model = MODELS.build(cfg.model)
    clip = (1, 3, cfg.clip_len, SIZE, SIZE)  # one clip per video, NCTHW
    inputs = [torch.randint(0, 256, clip, dtype=torch.uint8) for _ in range(2)]
    samples = [ActionDataSample().set_gt_label(i) for i in (0, 3)]
    losses = model(**model.data_preprocessor({"inputs": inputs, "data_samples": samples}, True),
                   mode="loss")
    losses["loss_cls"].backward()
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor({"inputs": inputs, "data_samples": samples}, False)
        feats = model.backbone(data["inputs"].flatten(0, 1))
        preds = model(**data, mode="predict")
    assert preds[0].pred_score.shape == (len(cfg.classes),)
    return f"mmaction2 {mmaction.__version__}: Hiera Recognizer3D, stages {_stage_shapes(feats)}"


def check_detectron2(data_dir: str) -> str:
    # The demo config registers the synthetic shapes set, written under DETECTRON2_DATASETS.
    os.environ["DETECTRON2_DATASETS"] = data_dir
    import detectron2
    from detectron2.config import LazyConfig, instantiate
    from detectron2.structures import BitMasks, Boxes, Instances
    from detectron2.utils.events import EventStorage

    cfg = LazyConfig.load(os.path.join(CONFIGS, "detectron2", "mask_rcnn_hiera_demo_shapes.py"))
    model = instantiate(cfg.model)  # imports hiera_backbones.detectron2 through the config
    size = cfg.dataloader.image_size
    item = {"image": torch.rand(3, size, size) * 255, "height": size, "width": size}
    instances = Instances((size, size))
    instances.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 60.0, 50.0]]))
    instances.gt_classes = torch.tensor([1])
    masks = torch.zeros(1, size, size, dtype=torch.bool)
    masks[:, 10:50, 10:60] = True
    instances.gt_masks = BitMasks(masks)
    model.train()
    with EventStorage(0):
        losses = model([{**item, "instances": instances}])
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        feats = model.backbone.bottom_up(torch.zeros(1, 3, size, size))
        out = model([item])
    assert out[0]["instances"].image_size == (size, size)
    shapes = _stage_shapes(list(feats.values()))
    return f"detectron2 {detectron2.__version__}: Hiera Mask R-CNN, stages {shapes}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("framework", choices=("mmdet", "mmaction", "detectron2"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.framework == "detectron2":
                summary = check_detectron2(tmp)
            else:
                summary = {"mmdet": check_mmdet, "mmaction": check_mmaction}[args.framework]()
    except Exception as err:  # one line for the log; the step that failed is in the message
        print(f"error: {args.framework}: {type(err).__name__}: {err}".splitlines()[0],
              file=sys.stderr)
        return 1
    print(f"ok: torch {torch.__version__}, {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
