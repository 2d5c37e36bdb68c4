# A small Mask R-CNN with a reduced Hiera (stages (1, 1, 2, 1), width 32) trained from scratch on
# the synthetic COCO shapes set (squares, circles, triangles), at 64x64: 300 iterations train
# and evaluate on one CPU core in under two minutes (bbox AP about 0.4, mask AP about 0.45).
# For smoke tests and the demo, not for accuracy.
#
#   python tools/make_coco_shapes.py data/coco_shapes --train 200 --val 50 --size 64 64
#   python tools/mm_train.py configs/mmdet/mask-rcnn_hiera-mini_fpn_coco-shapes.py
#
# Same model file as the COCO configs (FPN + LayerNorm, 2-conv RPN, 4-conv heads with LayerNorm;
# same recipe: RandomResize + RandomCrop jitter, AdamW, the layer-decay constructor), scaled
# down.
_base_ = [
    './_base_/models/mask-rcnn_hiera-b_fpn.py',
    'mmdet::_base_/default_runtime.py',
]

image_size = (64, 64)
classes = ('square', 'circle', 'triangle')
data_root = 'data/coco_shapes/'
channels = 32

model = dict(
    data_preprocessor=dict(
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        _delete_=True,  # a reduced Hiera-T, every argument given here
        type='Hiera',
        arch='hiera_tiny_224',
        embed_dim=32,
        num_heads=1,
        stages=(1, 1, 2, 1),
        input_size=image_size,
        out_norm=True,
        init_cfg=None),  # from scratch
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=channels),
    rpn_head=dict(
        in_channels=channels,
        feat_channels=channels,
        # Shapes are 10-30 px wide at 64x64: anchors of 16-256 px on P2-P6.
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(
            in_channels=channels,
            conv_out_channels=channels,
            fc_out_channels=128,
            num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(
            in_channels=channels,
            conv_out_channels=channels,
            num_classes=len(classes))),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_type='absolute_range',
        crop_size=image_size,
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json',
    metric=['bbox', 'segm'])
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=1.0, norm_decay_mult=0.0),
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', interval=max_iters, by_epoch=False),
    visualization=dict(type='DetVisualizationHook', draw=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, deterministic=False)
