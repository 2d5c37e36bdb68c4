"""Mask R-CNN, Hiera-B+, COCO, 100 epochs (paper recipe: lr 3.5e-5, drop path 0.2; expected
53.5 AP box, 47.3 AP mask from MAE IN-1K weights)."""

from .mask_rcnn_hiera_base_100ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.arch = "hiera_base_plus_224"
model.backbone.bottom_up.drop_path_rate = 0.2
optimizer.lr = 3.5e-5
train.init_checkpoint = "hiera_backbones://hiera_base_plus_224:mae_in1k"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
