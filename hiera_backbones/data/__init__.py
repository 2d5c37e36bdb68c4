"""Small synthetic data sets for tests, the demo and smoke runs (no downloads)."""

from .coco_shapes import SHAPE_CLASSES, ensure_coco_shapes, make_coco_shapes

__all__ = ["SHAPE_CLASSES", "ensure_coco_shapes", "make_coco_shapes"]
