"""Mask R-CNN, HVT-S-4 in dense mode, COCO, 100 epochs (no published detection recipe or numbers;
this is ours).

Dense mode: 2D max pooling (``pooling="2d"``) with patch 4, so HVT-S-4's five stages (pools after
blocks 0, 3, 6, 9) have strides 4, 8, 16, 32, 64 and feed the FPN's P2-P6 directly (no max-pool
top block): every block is used. The ImageNet-1k release is converted on the fly (1D -> 2D
stage embeddings, 16x16 -> 4x4 patch kernel, embeddings resized to 1024). Recipe: the Hiera
recipe's data, heads and schedule, with AdamW lr 1e-4 (ViTDet's default AdamW lr, for a
supervised 22M-parameter backbone) and drop path 0.1 (HVT-S's ImageNet training value).

Cost: block 0 attends globally over (1024 / 4)^2 = 65536 tokens and blocks 1-3 over 16384;
use a GPU with memory-efficient attention, and ``model.backbone.bottom_up.grad_checkpointing=True``
if memory is short.
"""

from detectron2.config import LazyCall as L

from hiera_backbones.detectron2 import D2HVT

from .mask_rcnn_hiera_base_100ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up = L(D2HVT)(
    arch="hvt_s_4",
    patch_size=4,
    out_features=["res2", "res3", "res4", "res5", "res6"],
    input_size=("${dataloader.image_size}", "${dataloader.image_size}"),
    drop_path_rate=0.1,
    out_norm=True,
)
model.backbone.top_block = None  # res6 (stride 64) gives P6
optimizer.lr = 1e-4
train.init_checkpoint = "hiera_backbones://hvt_s_4:in1k"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
