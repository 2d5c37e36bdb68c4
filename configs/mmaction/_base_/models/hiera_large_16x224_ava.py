# Spatio-temporal action detector (AVA) with a Hiera video backbone: MMDetection's FastRCNN on
# precomputed person proposals + Hiera-L 16x224 (the last layer, stride 32, LayerNorm-ed; input
# padded to a multiple of 32) + AVARoIHead (RoIAlign 7x7 with temporal average pooling, spatial
# max pooling, a linear multi-label BBoxHeadAVA over the 80 AVA actions + index 0), video
# mean/std, the AVA RoI assigner / sampler. The architecture only: the paper configs add the
# pretrained weights (backbone.init_cfg), drop path, activation checkpointing and the head's
# dropout.
# Used by hiera-large-16x224_mae-k400-ft-pre_16xb8-16x4x1-30e-sgd_ava22-rgb.py (and through it
# hiera-huge-16x224_mae-k400-ft-pre_...) and hiera-mini_scratch_1xb4-8x2x1-5e_ava-shapes-rgb.py.
custom_imports = dict(
    imports=['hiera_backbones.mmaction', 'mmdet.models'], allow_failed_imports=False)

model = dict(
    type='FastRCNN',
    _scope_='mmdet',
    backbone=dict(
        type='mmaction.Hiera',
        arch='hiera_large_16x224',
        input_size=(16, 224, 224),
        out_indices=(3, ),  # the last layer, stride 32
        out_norm=True,  # LayerNorm on the map the RoI head reads
        pad_input=True),
    roi_head=dict(
        type='AVARoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor3D',
            roi_layer_type='RoIAlign',
            featmap_stride=32,
            output_size=7,
            with_temporal_pool=True),
        bbox_head=dict(
            type='BBoxHeadAVA',
            background_class=True,
            in_channels=1152,
            num_classes=81,  # 80 AVA action ids + index 0
            temporal_pool_type='avg',
            spatial_pool_type='max',
            multilabel=True)),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        _scope_='mmaction',
        mean=[114.75, 114.75, 114.75],
        std=[57.375, 57.375, 57.375],
        format_shape='NCTHW'),
    train_cfg=dict(
        rcnn=dict(
            assigner=dict(
                type='MaxIoUAssignerAVA', pos_iou_thr=0.9, neg_iou_thr=0.9, min_pos_iou=0.9),
            sampler=dict(
                type='RandomSampler',
                num=32,
                pos_fraction=1,
                neg_pos_ub=-1,
                add_gt_as_proposals=True),
            pos_weight=1.0)),
    test_cfg=dict(rcnn=None))
