"""Mask R-CNN, Hiera-L, COCO, 100 epochs (paper recipe: lr 3e-5, drop path 0.4; expected
55.0 AP box, 48.6 AP mask from MAE IN-1K weights)."""

from .mask_rcnn_hiera_base_100ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.arch = "hiera_large_224"
model.backbone.bottom_up.drop_path_rate = 0.4
optimizer.lr = 3e-5
train.init_checkpoint = "hiera_backbones://hiera_large_224:mae_in1k"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
