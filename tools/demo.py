#!/usr/bin/env python
"""The main job on built-in data: a small Hiera Mask R-CNN, trained and evaluated on CPU.

1. writes the seeded synthetic COCO shapes set (squares, circles, triangles with masks),
2. trains a small Hiera Mask R-CNN on it for a few minutes (progress bar),
3. evaluates COCO box and mask AP with the framework's own COCO evaluator,
4. draws predictions beside the ground truth into a PNG.

    python tools/demo.py                          # detectron2, from scratch
    python tools/demo.py --framework mmdet        # the same job through MMDetection
    python tools/demo.py --weights mae_hiera_tiny_224.pth   # start from (MAE) weights

``--weights`` takes any file the converter reads (official / MAE / timm / Hugging Face Hiera
files or converted ones); the demo's backbone is a narrow Hiera-T (width 32, blocks 1-1-2-1), so
only weights of that shape fit: use it with your own small pretrained Hiera, or see
docs/detectron2.md and docs/mmdetection.md for the full-size COCO configs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from hiera_backbones.checkpoints.io import write_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D2_CONFIG = os.path.join(ROOT, "configs", "detectron2", "mask_rcnn_hiera_demo_shapes.py")
MMDET_CONFIG = os.path.join(ROOT, "configs", "mmdet", "mask-rcnn_hiera-mini_fpn_coco-shapes.py")
COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180)]

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*meshgrid.*")


# ----------------------------------------------------------------------------- drawing
def draw_instances(image: np.ndarray, boxes, masks, labels, classes, scores=None) -> Image.Image:
    """RGB uint8 image + instances -> a picture with translucent masks, boxes and labels."""
    canvas = Image.fromarray(image).convert("RGBA")
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for i, (box, label) in enumerate(zip(boxes, labels)):
        colour = COLOURS[int(label) % len(COLOURS)]
        if masks is not None:
            region = np.asarray(masks[i]) > 0
            # Filled in the class colour, its outline opaque: visible on any background.
            overlay.paste((*colour, 150), (0, 0), Image.fromarray(region.astype(np.uint8) * 255))
            overlay.paste((*colour, 255), (0, 0),
                          Image.fromarray(_outline(region).astype(np.uint8) * 255))
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=(*colour, 140), width=1)
        text = classes[int(label)] + (f" {scores[i]:.2f}" if scores is not None else "")
        draw.text((x0 + 1, max(0.0, y0 - 10)), text, fill=(255, 255, 255, 255))
    return Image.alpha_composite(canvas, overlay).convert("RGB")


def _outline(region: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` with a 4-neighbour outside it."""
    padded = np.pad(region, 1)
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return region & ~interior


def ground_truth(coco, image_id: int):
    cat_ids = sorted(coco.getCatIds())
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False))
    boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
             for a in anns]
    masks = [coco.annToMask(a) for a in anns]
    labels = [cat_ids.index(a["category_id"]) for a in anns]
    return boxes, masks, labels


def coco_ap_per_class(ann_file: str, results_file: str, iou_type: str) -> dict[str, float]:
    """COCO AP (IoU 0.50:0.95, all areas, 100 detections) of each category and ``"all"``, by
    pycocotools from the framework's own results file, the way detectron2's and MMDetection's
    evaluators derive their per-category numbers."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        gt = COCO(ann_file)
        detections = json.loads(Path(results_file).read_text())
        if not detections:
            return {c["name"]: 0.0 for c in gt.loadCats(gt.getCatIds())} | {"all": 0.0}
        evaluation = COCOeval(gt, gt.loadRes(detections), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"]  # (IoU, recall, category, area, max detections)
    per_class = {}
    for k, cat_id in enumerate(evaluation.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        name = gt.loadCats(int(cat_id))[0]["name"]
        per_class[name] = 100 * float(values.mean()) if values.size else 0.0
    per_class["all"] = 100 * float(evaluation.stats[0])
    return per_class


def ap_table(box: dict[str, float], mask: dict[str, float]) -> str:
    lines = [f"{'':10s} {'box AP':>7s} {'mask AP':>8s}"]
    lines += [f"{name:10s} {box[name]:7.1f} {mask[name]:8.1f}" for name in box]
    return "\n".join(lines)


def draw_results(ann_file: str, results_file: str, image_root: str, num_images: int,
                 score_threshold: float = 0.5) -> list[tuple[Image.Image, Image.Image]]:
    """(ground truth, predictions) pictures of the first ``num_images`` validation images, the
    predictions read from the results file the evaluator scored (boxes, classes, scores and
    RLE masks in COCO's format): the picture shows exactly what the AP was computed from."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    coco = COCO(ann_file)
    cat_ids = sorted(coco.getCatIds())
    classes = [coco.loadCats(c)[0]["name"] for c in cat_ids]
    detections: dict[int, list[dict]] = {}
    for det in json.loads(Path(results_file).read_text()):
        if det["score"] > score_threshold:
            detections.setdefault(det["image_id"], []).append(det)
    rows = []
    for image_id in sorted(coco.getImgIds())[:num_images]:
        info = coco.loadImgs(image_id)[0]
        image = np.asarray(Image.open(os.path.join(image_root, info["file_name"])).convert("RGB"))
        dets = sorted(detections.get(image_id, []), key=lambda d: -d["score"])
        boxes = [[d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2],
                  d["bbox"][1] + d["bbox"][3]] for d in dets]
        masks = [mask_utils.decode(d["segmentation"]) for d in dets]
        labels = [cat_ids.index(d["category_id"]) for d in dets]
        scores = [d["score"] for d in dets]
        gt = ground_truth(coco, image_id)
        rows.append((draw_instances(image, *gt, classes),
                     draw_instances(image, boxes, masks, labels, classes, scores)))
    return rows


def save_panel(rows: list[tuple[Image.Image, Image.Image]], path: str, caption: str,
               scale: int = 3) -> None:
    """Ground truth (left) beside predictions (right), one row per image, upscaled, under a
    caption (what was trained, its AP)."""
    w, h = rows[0][0].size
    top = 32
    panel = Image.new("RGB", (2 * w * scale + 8, len(rows) * (h * scale + 4) + top),
                      (20, 20, 20))
    draw = ImageDraw.Draw(panel)
    draw.text((4, 3), caption, fill=(255, 255, 255))
    draw.text((4, 17), "ground truth", fill=(200, 200, 200))
    draw.text((w * scale + 12, 17), "predictions (score > 0.5): class, score, mask",
              fill=(200, 200, 200))
    for r, (gt, pred) in enumerate(rows):
        y = top + r * (h * scale + 4)
        panel.paste(gt.resize((w * scale, h * scale), Image.NEAREST), (0, y))
        panel.paste(pred.resize((w * scale, h * scale), Image.NEAREST), (w * scale + 8, y))
    write_atomic(path, panel.save)


# ----------------------------------------------------------------------------- detectron2
def run_detectron2(args: argparse.Namespace) -> dict:
    from detectron2.config import LazyConfig, instantiate
    from detectron2.engine import SimpleTrainer, hooks
    from detectron2.engine.train_loop import HookBase
    from detectron2.evaluation import inference_on_dataset
    from detectron2.utils.logger import setup_logger
    from tqdm import tqdm

    from hiera_backbones.detectron2 import HieraCheckpointer, register_coco_shapes

    setup_logger(name="detectron2", abbrev_name="d2").setLevel("WARNING")
    setup_logger(name="hiera_backbones").setLevel("INFO")
    os.environ["DETECTRON2_DATASETS"] = args.data
    cfg = LazyConfig.load(D2_CONFIG)
    train_set, val_set = register_coco_shapes(os.path.join(args.data, "coco_shapes"))
    cfg.train.device = "cpu"
    cfg.train.max_iter = args.iters
    cfg.train.output_dir = os.path.join(args.output, "detectron2")
    cfg.dataloader.evaluator.output_dir = cfg.train.output_dir
    torch.manual_seed(cfg.train.seed)

    model = instantiate(cfg.model)
    if args.weights:
        HieraCheckpointer(model).load(args.weights)  # converts official / MAE files on the fly
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    trainer = SimpleTrainer(model, instantiate(cfg.dataloader.train), optimizer)

    class Progress(HookBase):
        def before_train(self) -> None:
            self.bar = tqdm(total=args.iters, desc="training (detectron2)", unit="it")

        def after_step(self) -> None:
            loss = self.trainer.storage.history("total_loss").latest()
            self.bar.set_postfix(loss=f"{loss:.3f}")
            self.bar.update(1)

        def after_train(self) -> None:
            self.bar.close()

    trainer.register_hooks([hooks.IterationTimer(),
                            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
                            Progress()])
    start = time.time()
    trainer.train(0, args.iters)
    train_seconds = time.time() - start
    os.makedirs(cfg.train.output_dir, exist_ok=True)
    torch.save({"model": model.state_dict()}, os.path.join(cfg.train.output_dir, "model.pth"))

    print("evaluating on the validation images (detectron2 COCOEvaluator) ...")
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test),
                                   instantiate(cfg.dataloader.evaluator))

    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(val_set)
    results_file = os.path.join(cfg.train.output_dir, "coco_instances_results.json")
    return {"bbox_ap": results["bbox"]["AP"], "segm_ap": results["segm"]["AP"],
            "train_seconds": train_seconds, "ann_file": meta.json_file,
            "image_root": meta.image_root,
            "results_files": {"bbox": results_file, "segm": results_file}}


# ----------------------------------------------------------------------------- MMDetection
def run_mmdet(args: argparse.Namespace) -> dict:
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.logging import MMLogger
    from mmengine.runner import Runner
    from tqdm import tqdm

    from hiera_backbones.data import make_coco_shapes
    from hiera_backbones.openmmlab.loading import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    cfg = Config.fromfile(MMDET_CONFIG)
    size = tuple(cfg.image_size)
    root = os.path.join(args.data, f"coco_shapes_{size[0]}x{size[1]}")
    if not os.path.isfile(os.path.join(root, "annotations", "instances_val.json")):
        make_coco_shapes(root, num_train=200, num_val=50, image_size=size)
    root += os.sep
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = root
    cfg.work_dir = os.path.join(args.output, "mmdet")
    results_prefix = os.path.join(cfg.work_dir, "coco_instances_results")
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = os.path.join(root, "annotations", "instances_val.json")
        evaluator.outfile_prefix = results_prefix  # CocoMetric writes <prefix>.{bbox,segm}.json
    cfg.train_cfg.max_iters = args.iters
    cfg.train_cfg.val_interval = args.iters + 1  # evaluated once, below
    cfg.default_hooks.logger.interval = max(args.iters, 1)
    cfg.default_hooks.checkpoint.interval = args.iters
    for scheduler in cfg.get("param_scheduler", []):  # the same schedule, stretched
        if not scheduler.get("by_epoch", True):
            scheduler.begin = round(scheduler.begin * args.iters / cfg.max_iters)
            scheduler.end = round(scheduler.end * args.iters / cfg.max_iters)
    if args.weights:
        cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=args.weights)
    cfg.log_level = "WARNING"

    class Progress(Hook):
        def before_train(self, runner) -> None:
            self.bar = tqdm(total=args.iters, desc="training (MMDetection)", unit="it")

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            loss = float(outputs["loss"]) if outputs and "loss" in outputs else float("nan")
            self.bar.set_postfix(loss=f"{loss:.3f}")
            self.bar.update(1)

        def after_train(self, runner) -> None:
            self.bar.close()

    runner = Runner.from_cfg(cfg)
    MMLogger.get_current_instance().setLevel("WARNING")
    runner.register_hook(Progress(), priority="LOWEST")
    start = time.time()
    runner.train()
    train_seconds = time.time() - start
    print("evaluating on the validation images (MMDetection CocoMetric) ...")
    metrics = runner.val_loop.run()

    return {"bbox_ap": 100 * metrics["coco/bbox_mAP"], "segm_ap": 100 * metrics["coco/segm_mAP"],
            "train_seconds": train_seconds, "ann_file": cfg.val_evaluator.ann_file,
            "image_root": os.path.join(root, cfg.val_dataloader.dataset.data_prefix.img),
            "results_files": {t: f"{results_prefix}.{t}.json" for t in ("bbox", "segm")}}


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=("detectron2", "mmdet"), default="detectron2")
    parser.add_argument("--weights", help="backbone weights to start from (any supported format)")
    parser.add_argument("--iters", type=int, default=800,
                        help="training iterations (800: every class learned, see the config)")
    parser.add_argument("--output", default="demo_output", help="where results go")
    parser.add_argument("--data", help="data folder (default: OUTPUT/datasets)")
    parser.add_argument("--num-images", type=int, default=4, help="images in the picture")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.num_images < 1:
        parser.error("--iters and --num-images must be >= 1")
    if args.weights and not os.path.exists(args.weights) and ":" not in args.weights:
        parser.error(f"--weights {args.weights}: no such file")
    args.output = os.path.abspath(args.output)
    args.data = os.path.abspath(args.data or os.path.join(args.output, "datasets"))
    os.makedirs(args.output, exist_ok=True)
    # Two cores: one intra-op thread per core, no oversubscription with the data loader.
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    runner = run_detectron2 if args.framework == "detectron2" else run_mmdet
    out = runner(args)
    box = coco_ap_per_class(out["ann_file"], out["results_files"]["bbox"], "bbox")
    mask = coco_ap_per_class(out["ann_file"], out["results_files"]["segm"], "segm")
    picture = os.path.join(args.output, f"predictions_{args.framework}.png")
    caption = (f"{args.framework}, {args.iters} iterations ({out['train_seconds']:.0f} s on CPU): "
               f"box AP {out['bbox_ap']:.1f}, mask AP {out['segm_ap']:.1f}")
    rows = draw_results(out["ann_file"], out["results_files"]["segm"], out["image_root"],
                        args.num_images)
    save_panel(rows, picture, caption)
    summary = {
        "framework": args.framework,
        "iterations": args.iters,
        "train_seconds": round(out["train_seconds"], 1),
        "bbox_AP": round(out["bbox_ap"], 2),
        "segm_AP": round(out["segm_ap"], 2),
        "bbox_AP_per_class": {k: round(v, 2) for k, v in box.items() if k != "all"},
        "segm_AP_per_class": {k: round(v, 2) for k, v in mask.items() if k != "all"},
        "weights": args.weights or "from scratch",
        "picture": picture,
    }
    write_atomic(os.path.join(args.output, f"results_{args.framework}.json"),
                 lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    print(f"\nCOCO AP on the synthetic validation set ({args.framework}, {args.iters} iterations, "
          f"{summary['train_seconds']:.0f} s of training): box AP {summary['bbox_AP']:.1f}, "
          f"mask AP {summary['segm_AP']:.1f}")
    print(ap_table(box, mask))
    print(f"predictions beside ground truth: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
