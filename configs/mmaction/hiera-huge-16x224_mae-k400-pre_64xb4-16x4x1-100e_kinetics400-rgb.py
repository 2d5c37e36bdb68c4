# Hiera-H, 16x224, Kinetics-400 fine-tuning from the official video MAE weights (Tab. 11b):
# lr 4e-4 for batch 256, 100 epochs (10 warmup), drop path 0.3, dropout 0.5, layer decay 0.875
# (3200-epoch pretraining; 0.9 for 1600). Paper: 87.8 top-1 (3 x 5 views).
_base_ = ['./hiera-large-16x224_mae-k400-pre_64xb4-16x4x1-100e_kinetics400-rgb.py']

pretrained = 'hiera_huge_16x224:mae_k400'
model = dict(
    backbone=dict(
        arch='hiera_huge_16x224',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    cls_head=dict(in_channels=2048))
optim_wrapper = dict(optimizer=dict(lr=4e-4))
