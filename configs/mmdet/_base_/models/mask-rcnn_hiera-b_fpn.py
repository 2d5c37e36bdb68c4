# Mask R-CNN with a Hiera backbone and FPN, ViTDet-style: MMDetection's Mask R-CNN + FPN
# (mmdet::_base_/models/mask-rcnn_r50_fpn.py) with Hiera-B at 1024x1024 (the four stages,
# strides 4-32, a LayerNorm per output) in place of ResNet-50, LayerNorm in the FPN and the RoI
# heads, a 2-conv RPN, a 4-conv + 1-fc box head (and the 4-conv mask head), batches padded to
# the full 1024 crop. The architecture only: the paper configs add the pretrained weights
# (backbone.init_cfg) and drop path; the other sizes override backbone.arch and
# neck.in_channels.
# Used by mask-rcnn_hiera-b_fpn_lsj-100e_coco.py (and through it the T / S / B+ / L configs and
# mask-rcnn_hvt-s-4_fpn_lsj-100e_coco.py, which swaps the backbone and the FPN's inputs) and
# mask-rcnn_hiera-mini_fpn_coco-shapes.py.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['hiera_backbones.mmdet'], allow_failed_imports=False)

# ViTDet's "LN" (LayerNorm over channels) in the FPN and the RoI heads.
norm_cfg = dict(type='LayerNorm2d', eps=1e-6)

model = dict(
    data_preprocessor=dict(
        # Hiera needs H and W multiples of 32 (patch 4 x 8x8 mask units), and 32 also makes the
        # FPN levels nest. Training pads every batch to the full 1024 crop, the size the
        # position embedding is kept at; test images keep their size (padded to 32).
        pad_size_divisor=32,
        batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='Hiera',
        arch='hiera_base_224',
        input_size=(1024, 1024),  # the MAE position embedding is resized to 1024 once, at load
        out_indices=(0, 1, 2, 3),  # strides 4, 8, 16, 32
        out_norm=True),  # LayerNorm per output (the official intermediates are not normalized)
    neck=dict(in_channels=[96, 192, 384, 768], norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))
