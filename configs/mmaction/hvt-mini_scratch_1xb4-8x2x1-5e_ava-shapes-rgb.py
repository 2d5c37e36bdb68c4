# The AVA-format shapes demo (data, schedule and optimizer as
# hiera-mini_scratch_1xb4-8x2x1-5e_ava-shapes-rgb.py) with a reduced video HVT laid out like
# HVT-S-1: one pool, right after block 0, so the last block's map (4 blocks of width 64) has
# stride 32, the map the RoI head reads.
#
#   python tools/mma_train.py configs/mmaction/hvt-mini_scratch_1xb4-8x2x1-5e_ava-shapes-rgb.py
_base_ = ['./_base_/models/hvt_s_1_ava.py', 'mmaction::_base_/default_runtime.py']

data_root = 'data/ava_shapes/'
anno_root = data_root + 'annotations/'
fps, timestamp_start, seconds = 8, 900, 5
num_classes = 5  # actions 1-4 plus the unused index 0, as AVA's 81 = 80 + 1
clip_len, frame_interval, size = 8, 2, 128

model = dict(
    backbone=dict(
        embed_dim=64,
        num_heads=2,
        depth=4,
        pool_block_width=4,  # pools after block 0 only
        patch_size=16,
        input_size=(clip_len, size, size),
        init_cfg=None),  # from scratch
    roi_head=dict(
        bbox_roi_extractor=dict(output_size=4),  # on the last block's (stride-32) map
        bbox_head=dict(
            in_channels=64,
            num_classes=num_classes,
            topk=(1, ),
            dropout_ratio=0.0)))

dataset = dict(
    type='AVADataset',
    fps=fps,
    timestamp_start=timestamp_start,
    timestamp_end=timestamp_start + seconds,
    num_classes=num_classes,
    label_file=anno_root + 'ava_action_list_v2.2_for_activitynet_2019.pbtxt',
    data_prefix=dict(img=data_root + 'rawframes'))
train_pipeline = [
    dict(type='SampleAVAFrames', clip_len=clip_len, frame_interval=frame_interval),
    dict(type='RawFrameDecode'),
    dict(type='RandomRescale', scale_range=(size, size * 9 // 8)),
    dict(type='RandomCrop', size=size),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW', collapse=True),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(
        type='SampleAVAFrames', clip_len=clip_len, frame_interval=frame_interval,
        test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, size)),
    dict(type='FormatShape', input_format='NCTHW', collapse=True),
    dict(type='PackActionInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        **dataset,
        ann_file=anno_root + 'ava_train_v2.2.csv',
        exclude_file=anno_root + 'ava_train_excluded_timestamps_v2.2.csv',
        proposal_file=anno_root + 'ava_dense_proposals_train.FAIR.recall_93.9.pkl',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,  # AVARoIHead.predict takes one clip at a time
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **dataset,
        ann_file=anno_root + 'ava_val_v2.2.csv',
        exclude_file=anno_root + 'ava_val_excluded_timestamps_v2.2.csv',
        proposal_file=anno_root + 'ava_dense_proposals_val.FAIR.recall_93.9.pkl',
        pipeline=val_pipeline,
        test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='AVAMetric',
    ann_file=anno_root + 'ava_val_v2.2.csv',
    label_file=anno_root + 'ava_action_list_v2.2_for_activitynet_2019.pbtxt',
    exclude_file=anno_root + 'ava_val_excluded_timestamps_v2.2.csv',
    num_classes=num_classes)
test_evaluator = val_evaluator

max_epochs = 5
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_begin=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=1.0, norm_decay_mult=0.0, bias_decay_mult=0.0),
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
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
auto_scale_lr = dict(enable=False, base_batch_size=4)
