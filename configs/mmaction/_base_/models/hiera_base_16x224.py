# Action recognizer with a Hiera video backbone: Recognizer3D + Hiera-B 16x224 + HieraHead
# (Kinetics-400 classes), video mean/std. The architecture only: the paper configs add the
# pretrained weights (backbone.init_cfg), drop path, the head's dropout and label smoothing, and
# mixup / cutmix; the other sizes override backbone.arch and cls_head.in_channels.
# Used by hiera-base-16x224_mae-k400-pre_32xb8-16x4x1-150e_kinetics400-rgb.py (and through it the
# B+ / L / H Kinetics-400 configs) and hiera-mini_scratch_1xb8-8x2x1-15e_motion-shapes-rgb.py.
custom_imports = dict(imports=['hiera_backbones.mmaction'], allow_failed_imports=False)

model = dict(
    type='Recognizer3D',
    backbone=dict(type='Hiera', arch='hiera_base_16x224', input_size=(16, 224, 224)),
    cls_head=dict(
        type='HieraHead', in_channels=768, num_classes=400, average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[114.75, 114.75, 114.75],
        std=[57.375, 57.375, 57.375],
        format_shape='NCTHW'))
