# AVA v2.2 with a video HVT-S-1 and the Hiera AVA recipe (see
# hiera-large-16x224_mae-k400-ft-pre_16xb8-16x4x1-30e-sgd_ava22-rgb.py): HVT-S-1 pools once,
# after block 0, so the map of its last block, like Hiera's last layer, has stride 32; RoI
# features are max-pooled over space from it. There is no published Kinetics HVT: fine-tune
# hvt-s-1-16x224_in1k-pre_32xb8-16x4x1-150e_kinetics400-rgb.py first and set `pretrained` to its
# checkpoint (its backbone.* weights are used). The default, the released ImageNet weights
# inflated to video, runs but is not the paper's setting. Drop path 0.1 (a ViT-S), 12 blocks.
_base_ = ['./hiera-large-16x224_mae-k400-ft-pre_16xb8-16x4x1-30e-sgd_ava22-rgb.py']

# e.g. pretrained = 'work_dirs/hvt-s-1-16x224_in1k-pre_..._kinetics400-rgb/epoch_150.pth'
pretrained = 'hvt_s_1:in1k'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmaction.HVT',
        arch='hvt_s_1',
        input_size=(16, 224, 224),
        out_norm=True,
        pad_input=True,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    roi_head=dict(bbox_head=dict(in_channels=384)))
