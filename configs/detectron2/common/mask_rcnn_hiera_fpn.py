"""Mask R-CNN + FPN over Hiera, as in the Hiera paper (arXiv 2306.00989, App. A.2 / Tab. 15):
multi-scale Hiera maps (strides 4-32, each layer-normalized) into a standard FPN with LayerNorm,
a 2-conv RPN head, 4-conv + 1-fc box head and 4-conv mask head, both with LayerNorm; images
normalized with ImageNet RGB statistics and padded to a 1024 square (LSJ)."""

from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from hiera_backbones.detectron2 import D2Hiera

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
constants = model_zoo.get_config("common/data/constants.py").constants

model.pixel_mean = constants.imagenet_rgb256_mean
model.pixel_std = constants.imagenet_rgb256_std
model.input_format = "RGB"

model.backbone.bottom_up = L(D2Hiera)(
    arch="hiera_base_224",
    out_features=["res2", "res3", "res4", "res5"],
    input_size=(1024, 1024),  # position embedding at the padded training size
    drop_path_rate=0.2,
    out_norm=True,
)
model.backbone.in_features = "${.bottom_up.out_features}"
model.backbone.norm = "LN"
model.backbone.square_pad = 1024

model.proposal_generator.head.conv_dims = [-1, -1]  # 2 hidden convs in the RPN head
model.roi_heads.box_head.conv_dims = [256, 256, 256, 256]
model.roi_heads.box_head.fc_dims = [1024]
model.roi_heads.box_head.conv_norm = "LN"
model.roi_heads.mask_head.conv_norm = "LN"
