# The AVA-format shapes demo (see hiera-mini_scratch_1xb4-8x2x1-5e_ava-shapes-rgb.py) with a
# reduced video HVT laid out like HVT-S-1: one pool, right after block 0, so the last block's map
# (4 blocks of width 64) has stride 32, the map the RoI head reads.
#
#   python tools/mma_train.py configs/mmaction/hvt-mini_scratch_1xb4-8x2x1-5e_ava-shapes-rgb.py
_base_ = ['./hiera-mini_scratch_1xb4-8x2x1-5e_ava-shapes-rgb.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmaction.HVT',
        arch='hvt_s_1',
        embed_dim=64,
        num_heads=2,
        depth=4,
        pool_block_width=4,  # pools after block 0 only
        patch_size=16,
        input_size=(8, 128, 128),
        out_norm=True,
        pad_input=True,
        init_cfg=None),
    roi_head=dict(bbox_head=dict(in_channels=64)))
