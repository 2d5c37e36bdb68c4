# Action recognizer with a video HVT backbone: Recognizer3D + HVT-S-4 (2x16x16 space-time
# tokens, spatial max pooling after blocks 0, 3, 6, 9) at 16x224 + HVTHead (the official HVT
# classifier: norm, then mean; Kinetics-400 classes), video mean/std. The architecture only: the
# paper configs add the pretrained weights (backbone.init_cfg), drop path, the head's dropout and
# label smoothing, and mixup / cutmix.
# Used by hvt-s-4-16x224_in1k-pre_32xb8-16x4x1-150e_kinetics400-rgb.py (and through it
# hvt-s-1-16x224_in1k-pre_...) and hvt-mini_scratch_1xb8-8x2x1-15e_motion-shapes-rgb.py.
custom_imports = dict(imports=['hiera_backbones.mmaction'], allow_failed_imports=False)

model = dict(
    type='Recognizer3D',
    backbone=dict(type='HVT', arch='hvt_s_4', input_size=(16, 224, 224)),
    cls_head=dict(type='HVTHead', in_channels=384, num_classes=400, average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[114.75, 114.75, 114.75],
        std=[57.375, 57.375, 57.375],
        format_shape='NCTHW'))
