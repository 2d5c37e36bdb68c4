"""Mask R-CNN, SAM 2.1 Hiera-B+ trunk (HieraDet), COCO, 100 epochs. The recipe is ours: the SAM 2.1
trunk is trained on SA-1B / SA-V (SAM 2's image and video segmentation training, initialized from
MAE Hiera), not MAE IN-1K alone, so no paper number applies and none is claimed.

Detector and schedule: the Hiera paper's Mask R-CNN (which follows ViTDet): 1024 LSJ, FPN with
LayerNorm over the four trunk stages (strides 4-32, 112/224/448/896 channels, each
layer-normalized), 2-conv RPN, 4-conv + 1-fc box head and 4-conv mask head with LayerNorm,
AdamW (0.9, 0.999), weight decay 0.1 (none on the position embeddings), batch 64, 184375
iterations with step decay at epochs 88.9 / 96.3, 250 warm-up iterations.

Our choices and why:
* lr 3.5e-5 and drop path 0.2: the Hiera-B+ recipe. HieraDet-B+ has Hiera-B+'s geometry
  (blocks 2-3-16-3, width 112, 24 blocks), so the depth-driven settings carry over.
* layer-wise lr decay 0.9 over the 24 blocks (Hiera-B+ uses none): SA-1B training already
  made the trunk dense and 1024-pixel; decaying the lr keeps its early stages close to that
  (patch embedding at 0.9**24 = 0.08 of the lr, the last block and the heads at the full lr),
  in the spirit of ViTDet's layer decay (0.7 over 12 blocks for ViT-B), milder because the
  starting point is already a segmentation model.
* input normalization: ImageNet RGB mean / std, which is what SAM 2 uses.
* windows and global blocks as released (8 / 4 / 14 / 7; global 12, 16, 20): at 1024 they are
  SAM 2's own geometry, so the position embeddings need no change.

The weights: the official SAM 2.1 release file, downloaded once and converted on the fly (only
``image_encoder.trunk`` is kept; the rest of SAM 2 is dropped) by the hiera_backbones:// handler,
so detectron2's own DetectionCheckpointer and tools/lazyconfig_train_net.py load it; or a local
SAM 2 / 2.1 release file (hiera_backbones:///path/sam2.1_hiera_base_plus.pt), a timm
sam2_hiera_base_plus file, or `hiera-convert ... --to detectron2` output.
"""

from functools import partial

from detectron2.config import LazyCall as L

from hiera_backbones.detectron2 import D2HieraDet, get_hiera_lr_decay_rate

from .mask_rcnn_hiera_base_100ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up = L(D2HieraDet)(
    arch="sam2_hiera_base_plus",
    out_features=["res2", "res3", "res4", "res5"],
    input_size=("${dataloader.image_size}", "${dataloader.image_size}"),
    drop_path_rate=0.2,
    out_norm=True,
)
train.init_checkpoint = "hiera_backbones://sam2.1_hiera_base_plus:sa1b"

optimizer.lr = 3.5e-5
optimizer.params.overrides = {
    "pos_embed": {"weight_decay": 0.0},
    "pos_embed_window": {"weight_decay": 0.0},
}
optimizer.params.lr_factor_func = partial(
    get_hiera_lr_decay_rate, num_layers=24, lr_decay_rate=0.9
)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
