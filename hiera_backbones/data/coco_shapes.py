"""A seeded synthetic COCO instance-segmentation set of simple shapes.

Each image shows a few filled squares, circles and triangles (random size, position, rotation
and colour) on a noisy background. Annotations are COCO polygons with boxes and areas, in the
layout detectron2 (``register_coco_instances``) and MMDetection (``CocoDataset``) read:

    root/
      train/000000.png ...
      val/000000.png ...
      annotations/instances_train.json
      annotations/instances_val.json

The same seed gives the same files, byte for byte.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw

from ..checkpoints.io import write_atomic

__all__ = ["SHAPE_CLASSES", "ensure_coco_shapes", "make_coco_shapes"]

SHAPE_CLASSES = ("square", "circle", "triangle")


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a regular polygon: a 32-gon for circles, 4 / 3 corners otherwise."""
    n = {"circle": 32, "square": 4, "triangle": 3}[kind]
    steps = [angle + 2 * math.pi * i / n for i in range(n)]
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in steps]


def _area(points: Sequence[tuple[float, float]]) -> float:
    return 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in
                         zip(points, [*points[1:], points[0]])))


def _make_image(rng: random.Random, size: tuple[int, int], max_shapes: int):
    height, width = size
    base = [rng.randint(0, 80) for _ in range(3)]
    image = Image.new("RGB", (width, height), tuple(base))
    # Background noise so the task is not trivially a colour threshold.
    pixels = image.load()
    for _ in range(width * height // 8):
        x, y = rng.randrange(width), rng.randrange(height)
        pixels[x, y] = tuple(min(255, c + rng.randint(0, 60)) for c in base)
    draw = ImageDraw.Draw(image)
    placed: list[tuple[float, float, float]] = []
    annotations = []
    for _ in range(rng.randint(1, max_shapes)):
        for _attempt in range(20):
            r = rng.uniform(0.08, 0.22) * min(height, width)
            cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
            if all(math.hypot(cx - x, cy - y) > r + q + 2 for x, y, q in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        category = rng.randrange(len(SHAPE_CLASSES))
        points = _polygon(SHAPE_CLASSES[category], cx, cy, r, rng.uniform(0, math.pi))
        colour = tuple(rng.randint(120, 255) for _ in range(3))
        draw.polygon(points, fill=colour)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, y0 = max(0.0, min(xs)), max(0.0, min(ys))
        x1, y1 = min(float(width), max(xs)), min(float(height), max(ys))
        annotations.append({
            "category_id": category + 1,
            "segmentation": [[round(v, 2) for p in points for v in p]],
            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
            "area": round(_area(points), 2),
            "iscrowd": 0,
        })
    return image, annotations


def _write_json(data: dict, path: str) -> None:
    def dump(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f)

    write_atomic(path, dump)


def make_coco_shapes(
    root: str,
    num_train: int = 200,
    num_val: int = 50,
    image_size: tuple[int, int] = (128, 128),
    max_shapes: int = 3,
    seed: int = 0,
) -> dict[str, dict[str, str]]:
    """Writes the set under ``root`` and returns ``{split: {"images": dir, "annotations": json}}``.

    Images are PNG (lossless, so the files are reproducible); ``image_size`` is (H, W).
    """
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"}
                  for i, n in enumerate(SHAPE_CLASSES)]
    out = {}
    for split, count in (("train", num_train), ("val", num_val)):
        image_dir = os.path.join(root, split)
        os.makedirs(image_dir, exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image, anns = _make_image(rng, image_size, max_shapes)
            name = f"{index:06d}.png"
            image.save(os.path.join(image_dir, name))
            images.append({"id": index + 1, "file_name": name, "height": image_size[0],
                           "width": image_size[1]})
            for ann in anns:
                annotations.append({"id": len(annotations) + 1, "image_id": index + 1, **ann})
        ann_file = os.path.join(root, "annotations", f"instances_{split}.json")
        _write_json({"images": images, "annotations": annotations, "categories": categories,
                     "info": {"description": f"synthetic shapes, seed {seed}"}}, ann_file)
        out[split] = {"images": image_dir, "annotations": ann_file}
    return out


def ensure_coco_shapes(root: str, **options: Any) -> dict[str, str]:
    """The set under ``root``, generated first if its annotations are missing (``options``:
    :func:`make_coco_shapes`' keyword arguments); returns ``{split: annotation file}``.
    Generation goes to a temporary folder renamed into place, so concurrent processes (e.g. one
    per GPU) are safe and a crash leaves no half-written set."""
    root = os.path.abspath(os.path.expanduser(root))
    ann = {s: os.path.join(root, "annotations", f"instances_{s}.json") for s in ("train", "val")}
    if all(os.path.isfile(p) for p in ann.values()):
        return ann
    if os.path.exists(root):
        raise FileExistsError(f"{root} exists but lacks {ann['train']} / {ann['val']}")
    os.makedirs(os.path.dirname(root), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".coco_shapes-", dir=os.path.dirname(root))
    make_coco_shapes(tmp, **options)
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 is for the temporary name only
    try:
        os.rename(tmp, root)
    except OSError:  # another process got there first; its files are the same
        shutil.rmtree(tmp, ignore_errors=True)
    return ann
