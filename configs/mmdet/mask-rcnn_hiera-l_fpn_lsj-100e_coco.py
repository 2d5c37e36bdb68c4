# Mask R-CNN, Hiera-L + FPN, COCO: the paper's L recipe (box AP 55.0 / mask AP 48.6 in
# Ryali et al., 2023, Tab. 10): lr 3e-5, drop path 0.4. Gradient checkpointing keeps the
# 1024x1024 activations of the 48 blocks in memory on 40-80 GB GPUs.
_base_ = './mask-rcnn_hiera-b_fpn_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        arch='hiera_large_224',
        drop_path_rate=0.4,
        grad_checkpointing=True,
        init_cfg=dict(checkpoint='hiera_large_224:mae_in1k')),
    neck=dict(in_channels=[144, 288, 576, 1152]))
optim_wrapper = dict(optimizer=dict(lr=3e-5))
