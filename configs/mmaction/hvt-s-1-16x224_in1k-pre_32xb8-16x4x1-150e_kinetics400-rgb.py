# Video HVT-S-1 on Kinetics-400 (see hvt-s-4-16x224_in1k-pre_32xb8-16x4x1-150e_kinetics400-rgb.py
# for the recipe): HVT-S-1 pools once, after block 0, so its last map keeps stride 32 (7x7 at
# 224). Its Kinetics checkpoint initializes the HVT AVA config.
_base_ = ['./hvt-s-4-16x224_in1k-pre_32xb8-16x4x1-150e_kinetics400-rgb.py']

pretrained = 'hvt_s_1:in1k'
model = dict(
    backbone=dict(arch='hvt_s_1', init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
