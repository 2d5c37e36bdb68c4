"""COCO with large-scale jitter (LSJ), as in the Hiera / ViTDet detection recipe.

Train: random flip, resize to a random scale in [0.1, 2.0] of ``image_size`` x ``image_size``
(aspect kept), crop to at most ``image_size`` x ``image_size`` (the model pads to the square);
boxes are recomputed from the cropped masks. Test: longest side ``image_size``.

Data are found as detectron2 finds its builtin sets: ``$DETECTRON2_DATASETS/coco/{train2017,
val2017,annotations/instances_{train,val}2017.json}`` (default ``./datasets``).
``dataloader.image_size`` is the one knob for the training / test size; the detector configs tie
the backbone's padding and position-embedding size to it.
"""

import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.image_size = 1024

dataloader.train.mapper.augmentations = [
    L(T.RandomFlip)(horizontal=True),
    L(T.ResizeScale)(
        min_scale=0.1,
        max_scale=2.0,
        target_height="${dataloader.image_size}",
        target_width="${dataloader.image_size}",
    ),
    L(T.FixedSizeCrop)(
        crop_size=("${dataloader.image_size}", "${dataloader.image_size}"), pad=False
    ),
]
dataloader.train.mapper.image_format = "RGB"  # Hiera / HVT were pretrained on RGB
dataloader.train.mapper.recompute_boxes = True  # crops cut objects: boxes from the masks
dataloader.train.total_batch_size = 64

dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(
        short_edge_length="${dataloader.image_size}", max_size="${dataloader.image_size}"
    ),
]
