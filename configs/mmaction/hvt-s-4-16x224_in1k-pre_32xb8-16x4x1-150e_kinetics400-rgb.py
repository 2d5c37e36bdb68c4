# Video HVT-S-4 (Scale HVT-Ti-4) on Kinetics-400, initialized from the released ImageNet-1k
# weights inflated to video (patch kernel spread over 2 frames, temporal embedding 0: a static
# clip gives the image model's features in every frame). Space-time tokens of 2x16x16 pixels,
# spatial 2D max pooling after blocks 0, 3, 6, 9, the official HVT classifier (norm, then mean).
#
# HVT has no published video recipe: this is the Hiera-B recipe (Tab. 11b of the Hiera paper)
# with the regularization of a 12-block ImageNet-initialized ViT-S (drop path 0.1, layer decay
# 0.75), not a tuned setting.
_base_ = ['./hiera-base-16x224_mae-k400-pre_32xb8-16x4x1-150e_kinetics400-rgb.py']

pretrained = 'hvt_s_4:in1k'
model = dict(
    backbone=dict(
        _delete_=True,
        type='HVT',
        arch='hvt_s_4',
        input_size=(16, 224, 224),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    cls_head=dict(type='HVTHead', in_channels=384))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.75))
