"""A small Mask R-CNN with a reduced SAM 2-style HieraDet trunk on the synthetic shapes set: trains
from scratch on CPU in minutes.

The detector, data and schedule of mask_rcnn_hiera_demo_shapes.py (128x128 shapes, 64-channel FPN,
32-channel RoI heads, AdamW lr 1e-3, cosine), with the trunk swapped for HieraDet: SAM 2-Tiny's
layout scaled down to width 32, one head, blocks 1-1-2-1, windows 8 / 4 / 4 / 4 (the 8x8 window
position embedding tiles the 32x32 stride-4 grid of a 128 image) and global attention in the last
two blocks, as SAM 2 mixes windowed and global blocks. For tests and the demo, not for accuracy.

    python tools/d2_train_net.py --device cpu \\
        --config-file configs/detectron2/mask_rcnn_hieradet_demo_shapes.py
"""

from detectron2.config import LazyCall as L

from hiera_backbones.detectron2 import D2HieraDet

from .mask_rcnn_hiera_demo_shapes import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up = L(D2HieraDet)(
    arch="sam2_hiera_tiny",
    embed_dim=32,
    num_heads=1,
    stages=(1, 1, 2, 1),
    window_spec=(8, 4, 4, 4),
    global_att_blocks=(3, 4),
    out_features=["res2", "res3", "res4", "res5"],
    input_size=("${dataloader.image_size}", "${dataloader.image_size}"),
    drop_path_rate=0.0,
    out_norm=True,
)
optimizer.params.overrides = {
    "pos_embed": {"weight_decay": 0.0},
    "pos_embed_window": {"weight_decay": 0.0},
}
train.output_dir = "./output/hieradet_demo_shapes"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
