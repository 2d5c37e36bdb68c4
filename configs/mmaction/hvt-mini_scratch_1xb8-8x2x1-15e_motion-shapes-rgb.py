# The motion-shapes demo (data, schedule and optimizer as
# hiera-mini_scratch_1xb8-8x2x1-15e_motion-shapes-rgb.py) with a reduced video HVT: 4 blocks of
# width 64, 8x8 patches, pooling after blocks 0 and 2 (strides 8 / 16 / 32), the official HVT
# classifier (norm on every token, then the mean).
#
#   python tools/mma_train.py configs/mmaction/hvt-mini_scratch_1xb8-8x2x1-15e_motion-shapes-rgb.py
_base_ = ['./_base_/models/hvt_s_4.py', 'mmaction::_base_/default_runtime.py']

data_root = 'data/motion_shapes/'
classes = ('right', 'left', 'down', 'up')
clip_len, frame_interval, crop = 8, 2, 64

model = dict(
    backbone=dict(
        embed_dim=64,
        num_heads=2,
        depth=4,
        pool_block_width=2,
        patch_size=8,
        input_size=(clip_len, crop, crop),
        init_cfg=None),  # from scratch
    cls_head=dict(
        in_channels=64,
        num_classes=len(classes),
        init_scale=1.0,  # from scratch: no need for the fine-tuning init
        topk=(1, )))

train_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=clip_len, frame_interval=frame_interval, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='RandomResizedCrop', area_range=(0.6, 1.0)),
    dict(type='Resize', scale=(crop, crop), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='DecordInit'),
    dict(
        type='SampleFrames',
        clip_len=clip_len,
        frame_interval=frame_interval,
        num_clips=1,
        test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, crop)),
    dict(type='CenterCrop', crop_size=crop),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
# Multi-view testing as on Kinetics (there 5 clips x 3 crops): 2 clips x 3 crops, the frames
# widened so that the three crops differ; scores averaged as probabilities.
test_pipeline = [
    dict(type='DecordInit'),
    dict(
        type='SampleFrames',
        clip_len=clip_len,
        frame_interval=frame_interval,
        num_clips=2,
        test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(crop * 5 // 4, crop), keep_ratio=False),
    dict(type='ThreeCrop', crop_size=crop),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='VideoDataset',
        ann_file=data_root + 'train_list_videos.txt',
        data_prefix=dict(video=data_root + 'videos_train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='VideoDataset',
        ann_file=data_root + 'val_list_videos.txt',
        data_prefix=dict(video=data_root + 'videos_val'),
        pipeline=val_pipeline,
        test_mode=True))
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='VideoDataset',
        ann_file=data_root + 'val_list_videos.txt',
        data_prefix=dict(video=data_root + 'videos_val'),
        pipeline=test_pipeline,
        test_mode=True))
val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator

max_epochs = 15
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_begin=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=1.0, norm_decay_mult=0.0, bias_decay_mult=0.0),
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=5.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-5, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, save_best=None))
randomness = dict(seed=0, deterministic=False)
auto_scale_lr = dict(enable=False, base_batch_size=8)
