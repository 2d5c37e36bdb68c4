# AVA v2.2 spatio-temporal action detection with Hiera-L, 16x224, from the official Kinetics-400
# MAE-pretrained and fine-tuned weights, with the paper's recipe (Ryali et al. 2023, Sec. 5 /
# App. A.1, Tab. 13; AVA v2.2 mAP 39.8 with K400 pretraining):
# RoI features from the last layer of Hiera (stride 32) pooled with spatial max pooling
# (temporal average), a linear classifier trained with (binary) cross entropy; SGD, lr 3.6 for
# batch 128, weight decay 1e-8, 5 warmup epochs + cosine, 30 epochs, drop path 0.4, dropout 0.5,
# layer decay 0.875. SlowFast-style data (as the paper's AVA setup): precomputed person
# proposals (FAIR, score >= 0.9) plus ground truth for training, short side jittered in
# [256, 320] and 224 crops for training, full frames at short side 256 for testing (padded to a
# multiple of 32 inside the backbone; boxes are unaffected).
#
#   python tools/mma_train.py configs/mmaction/<this config>.py
#
# To start from your own Kinetics run instead of the official file, point the backbone's
# init_cfg at its checkpoint (the recognizer's backbone.* weights are used, the classifier is
# ignored).
_base_ = ['./_base_/models/hiera_large_16x224_ava.py', 'mmaction::_base_/default_runtime.py']

pretrained = 'hiera_large_16x224:mae_k400_ft_k400'
num_classes = 81  # 80 AVA action ids + index 0 (60 of them evaluated, as in the label file)

model = dict(
    backbone=dict(
        drop_path_rate=0.4,
        grad_checkpointing=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    roi_head=dict(bbox_head=dict(num_classes=num_classes, dropout_ratio=0.5)))

dataset_type = 'AVADataset'
data_root = 'data/ava/rawframes'
anno_root = 'data/ava/annotations'
ann_file_train = f'{anno_root}/ava_train_v2.2.csv'
ann_file_val = f'{anno_root}/ava_val_v2.2.csv'
exclude_file_train = f'{anno_root}/ava_train_excluded_timestamps_v2.2.csv'
exclude_file_val = f'{anno_root}/ava_val_excluded_timestamps_v2.2.csv'
label_file = f'{anno_root}/ava_action_list_v2.2_for_activitynet_2019.pbtxt'
proposal_file_train = f'{anno_root}/ava_dense_proposals_train.FAIR.recall_93.9.pkl'
proposal_file_val = f'{anno_root}/ava_dense_proposals_val.FAIR.recall_93.9.pkl'

train_pipeline = [
    dict(type='SampleAVAFrames', clip_len=16, frame_interval=4),
    dict(type='RawFrameDecode'),
    dict(type='RandomRescale', scale_range=(256, 320)),
    dict(type='RandomCrop', size=224),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW', collapse=True),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='SampleAVAFrames', clip_len=16, frame_interval=4, test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='FormatShape', input_format='NCTHW', collapse=True),
    dict(type='PackActionInputs'),
]
train_dataloader = dict(
    batch_size=8,  # x 16 GPUs = 128
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        ann_file=ann_file_train,
        exclude_file=exclude_file_train,
        pipeline=train_pipeline,
        label_file=label_file,
        proposal_file=proposal_file_train,
        data_prefix=dict(img=data_root)))
val_dataloader = dict(
    batch_size=1,  # AVARoIHead.predict takes one clip at a time
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        ann_file=ann_file_val,
        exclude_file=exclude_file_val,
        pipeline=val_pipeline,
        label_file=label_file,
        proposal_file=proposal_file_val,
        data_prefix=dict(img=data_root),
        test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='AVAMetric', ann_file=ann_file_val, label_file=label_file,
    exclude_file=exclude_file_val, num_classes=num_classes)
test_evaluator = val_evaluator

max_epochs, warmup_epochs = 30, 5
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_begin=1, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',  # --amp for mixed precision
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.875, norm_decay_mult=0.0, bias_decay_mult=0.0),
    optimizer=dict(type='SGD', lr=3.6, momentum=0.9, weight_decay=1e-8))
param_scheduler = [
    # The warmup's start value is not given in the paper.
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=0,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=2))
auto_scale_lr = dict(enable=False, base_batch_size=128)
