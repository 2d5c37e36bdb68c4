# AVA v2.2 with Hiera-H, 16x224, from the official Kinetics-400 MAE + fine-tuned weights: the
# Hiera-L recipe (Tab. 13 lists one setting for both). Paper: 42.5 mAP with K400 pretraining.
_base_ = ['./hiera-large-16x224_mae-k400-ft-pre_16xb8-16x4x1-30e-sgd_ava22-rgb.py']

pretrained = 'hiera_huge_16x224:mae_k400_ft_k400'
model = dict(
    backbone=dict(
        arch='hiera_huge_16x224', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    roi_head=dict(bbox_head=dict(in_channels=2048)))
