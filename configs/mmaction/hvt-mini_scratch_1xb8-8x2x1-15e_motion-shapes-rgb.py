# The motion-shapes demo (see hiera-mini_scratch_1xb8-8x2x1-15e_motion-shapes-rgb.py) with a
# reduced video HVT: 4 blocks of width 64, 8x8 patches, pooling after blocks 0 and 2 (strides
# 8 / 16 / 32), the official HVT classifier (norm on every token, then the mean).
#
#   python tools/mma_train.py configs/mmaction/hvt-mini_scratch_1xb8-8x2x1-15e_motion-shapes-rgb.py
_base_ = ['./hiera-mini_scratch_1xb8-8x2x1-15e_motion-shapes-rgb.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='HVT',
        arch='hvt_s_4',
        embed_dim=64,
        num_heads=2,
        depth=4,
        pool_block_width=2,
        patch_size=8,
        input_size=(8, 64, 64),
        init_cfg=None),
    cls_head=dict(type='HVTHead', in_channels=64))
