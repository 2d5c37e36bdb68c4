# Mask R-CNN, Hiera-B + FPN, COCO, the Hiera paper's recipe (Ryali et al., ICML 2023, Tab. 10 and
# Tab. 15; box AP 52.2 / mask AP 46.3 there, MAE IN-1K pretraining), which follows ViTDet:
# 1024x1024 large-scale jitter (scale 0.1-2.0), FPN on the four Hiera stages, 2-conv RPN,
# 4-conv + 1-fc box head and 4-conv mask head, LayerNorm in FPN and heads, AdamW (0.9, 0.999)
# lr 3.5e-5, weight decay 0.1, drop path 0.2, no layer-wise lr decay, 100 epochs at batch 64
# with step decay. The paper trains with detectron2; this is the same recipe in MMDetection.
#
# Train: python tools/mm_train.py configs/mmdet/mask-rcnn_hiera-b_fpn_lsj-100e_coco.py
#   (8 GPUs: torchrun --nproc-per-node 8 tools/mm_train.py CONFIG --launcher pytorch --amp).
# Batch 64 = 32 GPUs x 2 images (the base's per-GPU batch); with fewer GPUs raise
# train_dataloader.batch_size, or pass --auto-scale-lr to scale the lr linearly instead.
_base_ = [
    './_base_/models/mask-rcnn_hiera-b_fpn.py',
    # 1024 LSJ, RepeatDataset(times=4) x 25 epochs = 100 epochs, CocoMetric bbox + segm.
    'mmdet::common/lsj-100e_coco-instance.py',
]

image_size = (1024, 1024)

model = dict(
    backbone=dict(
        drop_path_rate=0.2,
        # Official MAE IN-1K weights, downloaded once into ~/.cache/hiera_backbones and
        # converted on the fly; or a local file (official, or `hiera-convert --to mmdet`).
        init_cfg=dict(type='Pretrained', checkpoint='hiera_base_224:mae_in1k')))

# ViTDet evaluates with the longer side resized to 1024.
backend_args = None
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',  # --amp switches to AmpOptimWrapper
    constructor='LayerDecayOptimWrapperConstructor',
    # decay_rate=1.0: no layer-wise lr decay, as the paper; position embeddings (automatically)
    # and norm parameters (norm_decay_mult, as ViTDet) get no weight decay.
    paramwise_cfg=dict(decay_rate=1.0, norm_decay_mult=0.0),
    optimizer=dict(
        _delete_=True, type='AdamW', lr=3.5e-5, betas=(0.9, 0.999), weight_decay=0.1),
    clip_grad=None)

# 25 x 4 = 100 epochs; warm-up and steps as ViTDet (250 iterations from 0.001x; x0.1 at 89%
# and 96% of training).
max_epochs = 25
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[22, 24],
        gamma=0.1),
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=64)
