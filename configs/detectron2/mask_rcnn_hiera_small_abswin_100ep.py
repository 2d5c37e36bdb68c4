"""Mask R-CNN, abs-win Hiera-S (timm's hiera_small_abswin_256), COCO, 100 epochs. The recipe is
ours: this model has no published detection result, and its released weights are timm's
supervised ImageNet-12k training (the "sbb2" recipe, 200 epochs), not MAE IN-1K; no paper
number applies and none is claimed. (hiera_base_abswin_256 has no released weights; the abs-win
Hiera-S is the one to start from.)

Abs-win (Bolya et al., "Window Attention is Bugged", ICLR 2024): the position embedding is a
background grid interpolated to the token grid plus one mask unit's embedding tiled over the
mask units, so moving from 256 to 1024 pixels interpolates only the background and keeps the
per-window pattern exact; the blocks also have LayerScale, and the width doubles by pooling
instead of a projection.

Detector and schedule: as our Hiera COCO configs (the Hiera paper's / ViTDet's Mask R-CNN, 1024
LSJ, FPN + LayerNorm, 2-conv RPN, 4-conv LayerNorm heads, AdamW (0.9, 0.999), weight decay 0.1,
batch 64, 184375 iterations, step decay). Our choices: the Hiera-S settings of
mask_rcnn_hiera_small_100ep.py (lr 3.5e-5, drop path 0.1 for 16 blocks, no layer-wise lr decay):
same geometry and depth, and ViTDet found one recipe to serve supervised and MAE pretraining
alike; both position-embedding tensors without weight decay.
"""

from .mask_rcnn_hiera_base_100ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.arch = "hiera_small_abswin_256"
model.backbone.bottom_up.drop_path_rate = 0.1
optimizer.lr = 3.5e-5
optimizer.params.overrides = {
    "pos_embed": {"weight_decay": 0.0},
    "pos_embed_win": {"weight_decay": 0.0},
}
# timm's weights (Hugging Face), downloaded once and converted on the fly (the 11821-class
# ImageNet-12k head is dropped; the background position embedding is interpolated per input).
train.init_checkpoint = "hiera_backbones://hiera_small_abswin_256:sbb2_e200_in12k"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
