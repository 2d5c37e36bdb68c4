# Mask R-CNN, HVT-S-4 + FPN, COCO, with the Hiera recipe's data, heads and schedule. HVT
# (Pan et al., ICCV 2021) has no detection results; our choices:
# - 2D grid pooling (MaxPool2d(3, 2, 1) instead of the paper's 1D pooling, which does not keep a
#   2D grid) and patch 4, so its five stages (after blocks 0, 3, 6, 9 and 11) have strides
#   4, 8, 16, 32, 64 and feed the FPN as P2-P6 directly. Block 0 attends globally over the
#   256x256 stride-4 tokens of a 1024 image: use --amp (flash attention) on GPUs.
# - The official IN-1k weights (patch 16, 1D pooling) are converted on load: the patch kernel
#   resampled to 4x4 (exact zoom equivalence), stage position embeddings mapped to 2D grids.
# - HVT-S is a 12-block plain ViT (DeiT-S) with pooling and supervised (not MAE) weights, so
#   it takes ViTDet-B's plain-ViT setting (12 blocks too) rather than Hiera's: lr 1e-4,
#   layer-wise lr decay 0.7, drop path 0.1.
_base_ = './mask-rcnn_hiera-b_fpn_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='HVT',
        arch='hvt_s_4',
        input_size=(1024, 1024),
        patch_size=4,
        out_indices=(0, 1, 2, 3, 4),
        out_norm=True,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='hvt_s_4:in1k')),
    # Five inputs at strides 4-64 give the five levels without extra convs.
    neck=dict(in_channels=[384, 384, 384, 384, 384], num_outs=5))
optim_wrapper = dict(
    paramwise_cfg=dict(decay_rate=0.7),
    optimizer=dict(lr=1e-4))
