# Mask R-CNN, Hiera-T + FPN, COCO. The paper reports only B, B+ and L; our choice for T: the B
# recipe (lr 3.5e-5, no layer decay, 100 epochs) with drop path 0.1 instead of 0.2, since T has
# half of B's depth (12 blocks vs 24) and the paper scales drop path with depth (0.2 B, 0.4 L).
# Not a reproduced number; expect a few AP below Hiera-B.
_base_ = './mask-rcnn_hiera-b_fpn_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        arch='hiera_tiny_224',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='hiera_tiny_224:mae_in1k')),
    neck=dict(in_channels=[96, 192, 384, 768]))
