# Hiera-B+, 16x224, Kinetics-400 fine-tuning from the official video MAE weights: the Hiera-B
# recipe (Tab. 11b: same lr, epochs, drop path 0.2, dropout 0.3, layer decay 0.8 for 3200-epoch
# pretraining). Paper: 85.0 top-1 (3 x 5 views).
_base_ = ['./hiera-base-16x224_mae-k400-pre_32xb8-16x4x1-150e_kinetics400-rgb.py']

pretrained = 'hiera_base_plus_16x224:mae_k400'
model = dict(
    backbone=dict(
        arch='hiera_base_plus_16x224',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    cls_head=dict(in_channels=896))
