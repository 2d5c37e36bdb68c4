"""The synthetic COCO-format shapes set as registered detectron2 data sets."""

from __future__ import annotations

import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from ..data import SHAPE_CLASSES, ensure_coco_shapes

__all__ = ["register_coco_shapes"]


def register_coco_shapes(
    root: str | None = None,
    *,
    prefix: str = "coco_shapes",
    num_train: int = 200,
    num_val: int = 50,
    image_size: tuple[int, int] = (128, 128),
    max_shapes: int = 3,
    seed: int = 0,
) -> tuple[str, str]:
    """Registers the synthetic shapes set (:mod:`hiera_backbones.data.coco_shapes`) as
    ``<prefix>_train`` / ``<prefix>_val``, generating it first if ``root`` (default
    ``$DETECTRON2_DATASETS/coco_shapes``, as detectron2's builtin data sets) has no annotations
    (:func:`hiera_backbones.data.ensure_coco_shapes`: safe for concurrent processes). Returns
    the two data set names."""
    if root is None:
        root = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "coco_shapes")
    root = os.path.abspath(os.path.expanduser(root))
    ann = ensure_coco_shapes(root, num_train=num_train, num_val=num_val,
                             image_size=tuple(image_size), max_shapes=max_shapes, seed=seed)
    names = []
    for split in ("train", "val"):
        name = f"{prefix}_{split}"
        if name in DatasetCatalog.list():
            if MetadataCatalog.get(name).get("json_file") == ann[split]:
                names.append(name)
                continue
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_coco_instances(name, {}, ann[split], os.path.join(root, split))
        MetadataCatalog.get(name).set(thing_classes=list(SHAPE_CLASSES))
        names.append(name)
    return names[0], names[1]

