"""A small Hiera Mask R-CNN on the synthetic shapes set: trains from scratch on CPU in minutes.

The same detector as the COCO configs (Hiera into an FPN with LayerNorm, 2-conv RPN, 4-conv
LayerNorm heads, LSJ-style loader), scaled down: Hiera-T geometry with 1-1-2-1 blocks and width
32, 128x128 images, 64-channel FPN, 32-channel RoI heads, anchors 16-256, batch 4. The data set
(200 train / 50 val images of squares, circles and triangles) is written to
``$DETECTRON2_DATASETS/coco_shapes`` the first time (default ``./datasets``).

    python tools/d2_train_net.py --config-file configs/detectron2/mask_rcnn_hiera_demo_shapes.py \\
        --device cpu
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler

from hiera_backbones.detectron2 import register_coco_shapes

from .mask_rcnn_hiera_tiny_100ep import dataloader, model, optimizer, train

train_set, val_set = register_coco_shapes()

dataloader.image_size = 128
dataloader.train.dataset.names = train_set
dataloader.test.dataset.names = val_set
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 0
dataloader.test.num_workers = 0
# Milder jitter than COCO's [0.1, 2.0]: at 128 pixels a 0.1 scale leaves nothing to detect.
dataloader.train.mapper.augmentations[1].min_scale = 0.5
dataloader.train.mapper.augmentations[1].max_scale = 1.5

model.backbone.bottom_up.embed_dim = 32
model.backbone.bottom_up.stages = (1, 1, 2, 1)
model.backbone.bottom_up.drop_path_rate = 0.0

channels = 64
model.backbone.out_channels = channels
model.proposal_generator.head.in_channels = channels
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.pre_nms_topk = (1000, 500)
model.proposal_generator.post_nms_topk = (500, 200)
model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 64
model.roi_heads.box_head.input_shape = ShapeSpec(channels=channels, height=7, width=7)
# The RoI heads dominate CPU time: 32-channel convs there.
model.roi_heads.box_head.conv_dims = [32] * 4
model.roi_heads.box_head.fc_dims = [256]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=channels, height=14, width=14)
model.roi_heads.mask_head.conv_dims = [32] * 5

train.init_checkpoint = ""  # from scratch
# 800 iterations (16 epochs of 200 images): at 300 the boxes are right but the classifier still
# confuses squares with circles and triangles (box AP 46.9: square 38, circle 62, triangle 41);
# at 800 box AP 91.6 / mask AP 94.6 and every class >= 87 (tools/demo.py, seed 0).
train.max_iter = 800
train.amp.enabled = False
train.ddp.fp16_compression = False
train.checkpointer.period = 200
train.eval_period = 0  # evaluate once, at the end
train.log_period = 20
train.seed = 0
train.output_dir = "./output/hiera_demo_shapes"

optimizer.lr = 1e-3
optimizer.weight_decay = 0.05
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.05),
    warmup_length=0.1,
    warmup_factor=0.01,
)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
