# Mask R-CNN, SAM 2.1 Hiera-B+ trunk (HieraDet) + FPN, COCO, 100 epochs, 1024 LSJ. The recipe is
# ours: the SAM 2.1 trunk is trained on SA-1B / SA-V (SAM 2's segmentation training, initialized
# from MAE Hiera), not MAE IN-1K alone, so no paper number applies and none is claimed.
#
# Detector and schedule: as mask-rcnn_hiera-b_fpn_lsj-100e_coco.py (the Hiera paper's Mask R-CNN,
# which follows ViTDet): 1024 LSJ, FPN + LayerNorm over the four trunk stages (strides 4-32,
# 112/224/448/896 channels, each layer-normalized), 2-conv RPN, 4-conv + 1-fc box head and 4-conv
# mask head with LayerNorm, AdamW (0.9, 0.999), weight decay 0.1 (none on position embeddings
# and norms), batch 64, 100 epochs, step decay at 89% / 96%, 250 warm-up iterations.
# Our choices and why:
# * lr 3.5e-5 and drop path 0.2: the Hiera-B+ recipe; HieraDet-B+ has Hiera-B+'s geometry
#   (blocks 2-3-16-3, width 112, 24 blocks), so the depth-driven settings carry over.
# * layer-wise lr decay 0.9 over the 24 blocks (Hiera-B+ uses none): SA-1B training already
#   made the trunk dense and 1024-pixel; decay keeps its early stages close to that (patch
#   embedding at 0.9**24 = 0.08 of the lr, last block, neck and heads at the full lr), in the
#   spirit of ViTDet's layer decay (0.7 over 12 blocks for ViT-B), milder because the starting
#   point is already a segmentation model.
# * ImageNet RGB mean / std (the base's data preprocessor), which is what SAM 2 uses; windows and
#   global blocks as released (8 / 4 / 14 / 7; global 12, 16, 20), SAM 2's own 1024 geometry.
#
# Weights: the official SAM 2.1 release, downloaded once into ~/.cache/hiera_backbones and
# converted on the fly (image_encoder.trunk kept, the rest of SAM 2 dropped); or a local SAM 2 /
# 2.1 release file, a timm sam2_hiera_base_plus file, or `hiera-convert ... --to mmdet` output.
_base_ = './mask-rcnn_hiera-b_fpn_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='HieraDet',
        arch='sam2_hiera_base_plus',
        input_size=(1024, 1024),
        out_indices=(0, 1, 2, 3),  # strides 4, 8, 16, 32
        out_norm=True,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='sam2.1_hiera_base_plus:sa1b')),
    neck=dict(in_channels=[112, 224, 448, 896]))

optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.9))
