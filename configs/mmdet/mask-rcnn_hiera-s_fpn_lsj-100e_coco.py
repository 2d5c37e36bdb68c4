# Mask R-CNN, Hiera-S + FPN, COCO. The paper reports only B, B+ and L; our choice for S: the B
# recipe (lr 3.5e-5, no layer decay, 100 epochs) with drop path 0.1 instead of 0.2, since S
# (16 blocks) is closer in depth to T (12) than to B (24). Not a reproduced number.
_base_ = './mask-rcnn_hiera-b_fpn_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        arch='hiera_small_224',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='hiera_small_224:mae_in1k')),
    neck=dict(in_channels=[96, 192, 384, 768]))
