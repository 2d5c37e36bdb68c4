# Mask R-CNN, abs-win Hiera-S (timm's hiera_small_abswin_256) + FPN, COCO, 100 epochs, 1024 LSJ.
# The recipe is ours: this model has no published detection result, and its released weights are
# timm's supervised ImageNet-12k training (the "sbb2" recipe, 200 epochs), not MAE IN-1K; no paper
# number applies and none is claimed. (hiera_base_abswin_256 has no released weights.)
#
# Abs-win (Bolya et al., "Window Attention is Bugged", ICLR 2024): a background position
# embedding interpolated to the token grid plus one mask unit's embedding tiled over the mask
# units, so going from 256 to 1024 pixels interpolates only the background and keeps the
# per-window pattern exact; LayerScale in the blocks, width doubled by pooling.
#
# Detector and schedule: as mask-rcnn_hiera-b_fpn_lsj-100e_coco.py. Our choices: the settings of
# our Hiera-S config (lr 3.5e-5, weight decay 0.1, drop path 0.1 for 16 blocks, no layer-wise lr
# decay): same geometry and depth, and ViTDet found one recipe to serve supervised and MAE
# pretraining alike. Position embeddings get no weight decay (the constructor's rule).
_base_ = './mask-rcnn_hiera-b_fpn_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        arch='hiera_small_abswin_256',
        drop_path_rate=0.1,
        # timm's weights (Hugging Face), downloaded once and converted on the fly (the
        # 11821-class ImageNet-12k head dropped).
        init_cfg=dict(checkpoint='hiera_small_abswin_256:sbb2_e200_in12k')),
    neck=dict(in_channels=[96, 192, 384, 768]))
