# A small Mask R-CNN with a reduced SAM 2-style HieraDet trunk trained from scratch on the
# synthetic COCO shapes set, at 64x64: the detector, data and schedule of
# mask-rcnn_hiera-mini_fpn_coco-shapes.py (300 iterations, AdamW lr 2e-3, cosine) with the trunk
# swapped for HieraDet: SAM 2-Tiny's layout scaled down to width 32, one head, blocks 1-1-2-1,
# windows 8 / 4 (the 8x8 window position embedding tiles the 16x16 stride-4 grid of a 64 image)
# and global attention in the last two blocks, as SAM 2 mixes windowed and global blocks.
# For smoke tests and the demo, not for accuracy.
#
#   python tools/make_coco_shapes.py data/coco_shapes --train 200 --val 50 --size 64 64
#   python tools/mm_train.py configs/mmdet/mask-rcnn_hieradet-mini_fpn_coco-shapes.py
_base_ = './mask-rcnn_hiera-mini_fpn_coco-shapes.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='HieraDet',
        arch=dict(
            base='sam2_hiera_tiny',
            embed_dim=32,
            num_heads=1,
            stages=(1, 1, 2, 1),
            window_spec=(8, 4, 4, 4),
            global_att_blocks=(3, 4)),
        input_size=(64, 64),
        out_norm=True,
        init_cfg=None))  # from scratch
