# Mask R-CNN, Hiera-B+ + FPN, COCO: the paper's B+ recipe (box AP 53.5 / mask AP 47.3 in
# Ryali et al., 2023, Tab. 10): as Hiera-B (lr 3.5e-5, drop path 0.2), wider stages.
_base_ = './mask-rcnn_hiera-b_fpn_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        arch='hiera_base_plus_224',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='hiera_base_plus_224:mae_in1k')),
    neck=dict(in_channels=[112, 224, 448, 896]))
