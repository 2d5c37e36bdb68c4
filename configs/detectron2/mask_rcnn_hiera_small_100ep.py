"""Mask R-CNN, Hiera-S, COCO, 100 epochs.

The paper gives the recipe for B, B+ and L only. Our choice for T/S: the B recipe (AdamW lr
3.5e-5, weight decay 0.1; the lr did not change from B to B+ in the paper) with drop path 0.1
instead of 0.2: stochastic depth grows with model depth (paper: 0.2 for B/B+ with 24 blocks,
0.4 for L with 48; ViTDet: 0.1 for ViT-B) and T/S have 12/16 blocks. No published COCO numbers
to compare with.
"""

from .mask_rcnn_hiera_base_100ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.arch = "hiera_small_224"
model.backbone.bottom_up.drop_path_rate = 0.1
optimizer.lr = 3.5e-5
train.init_checkpoint = "hiera_backbones://hiera_small_224:mae_in1k"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
