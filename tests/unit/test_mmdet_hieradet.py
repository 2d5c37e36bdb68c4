"""MMDetection with SAM 2 / SAM 2.1 HieraDet trunks and abs-win Hiera, without training: the
registered ``HieraDet``, frozen stages, the layer-decay constructor on it, ``init_cfg`` from a
SAM 2.1 tag (pre-filled cache, offline), a release file, a timm file and a converted file, and
the new COCO configs built with their weights loaded (no downloads).

Training (one iteration of every config, the HieraDet mini detector learning) is
``tests/e2e/test_mmdet_training.py``."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv.ops")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

from checkpoint_files import in_download_cache, save_random_sam2_release  # noqa: E402
from frameworks import MMDET_CONFIGS, one_thread  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

import hiera_backbones.mmdet as hb_mmdet  # noqa: E402
from hiera_backbones import build_backbone  # noqa: E402
from hiera_backbones.checkpoints import (  # noqa: E402
    CheckpointError,
    convert_checkpoint,
)

CONFIG_DIR = str(MMDET_CONFIGS)
SAM2_CONFIG = "mask-rcnn_sam2.1-hiera-b-plus_fpn_lsj-100e_coco.py"
ABSWIN_CONFIG = "mask-rcnn_hiera-s-abswin_fpn_lsj-100e_coco.py"
TINY = dict(base="sam2_hiera_tiny", embed_dim=32, num_heads=1, stages=(1, 1, 2, 1),
            window_spec=(8, 4, 4, 4), global_att_blocks=(3, 4))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


def _build(cfg: dict):
    from mmdet.registry import MODELS

    with DefaultScope.overwrite_default_scope("mmdet"):
        return MODELS.build(cfg)


# ---------------------------------------------------------------------- the backbone
def test_hieradet_registered_and_our_model():
    from mmdet.registry import MODELS
    from mmengine.model import BaseModule

    from hiera_backbones.models import HieraDet

    assert MODELS.get("HieraDet") is hb_mmdet.HieraDet
    model = _build(dict(type="HieraDet", arch=TINY, input_size=(64, 64), frozen_stages=1))
    assert isinstance(model, BaseModule) and isinstance(model, HieraDet)
    plain = build_backbone("sam2_hiera_tiny", **{k: v for k, v in TINY.items() if k != "base"},
                           out_norm=True)
    assert model.state_dict().keys() == plain.state_dict().keys()
    feats = model(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [
        (2, 32, 16, 24), (2, 64, 8, 12), (2, 128, 4, 6), (2, 256, 2, 3)]
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {"pos_embed", "pos_embed_window", "blocks.0.attn.qkv.weight"} <= frozen
    assert not any(n.startswith("blocks.1.") for n in frozen)
    model.train()
    assert not model.blocks[0].training and model.blocks[1].training
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.randn(1, 3, 64, 100))
    with pytest.raises(ValueError, match="input_size must be"):
        hb_mmdet.HieraDet("sam2_hiera_tiny", input_size=(4, 64, 64))
    abswin = _build(dict(type="Hiera", arch="hiera_small_abswin_256", stages=(1, 1, 1, 1),
                         input_size=(64, 64)))
    assert [f.shape[1] for f in abswin(torch.randn(1, 3, 64, 64))] == [96, 192, 384, 768]


def test_layer_decay_constructor_on_hieradet():
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS

    model = torch.nn.Module()
    model.backbone = hb_mmdet.HieraDet(TINY, input_size=(64, 64))
    model.neck = torch.nn.Linear(4, 4)
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="LayerDecayOptimWrapperConstructor",
        optim_wrapper_cfg=dict(type="OptimWrapper",
                               optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.1)),
        paramwise_cfg=dict(decay_rate=0.5)))
    optimizer = constructor(model).optimizer
    group = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    n = model.backbone.num_layers
    bb = model.backbone
    assert group[id(bb.pos_embed_window)]["lr"] == group[id(bb.pos_embed)]["lr"] == 0.5**n
    assert group[id(bb.pos_embed_window)]["weight_decay"] == 0.0
    assert group[id(bb.blocks[1].proj.weight)]["lr"] == 0.5 ** (n - 2)
    assert group[id(bb.blocks[4].mlp.fc1.weight)]["lr"] == 1.0
    assert group[id(model.neck.weight)]["lr"] == 1.0


def test_init_cfg_takes_tag_release_timm_and_converted_files(offline_cache, tmp_path):
    def build(checkpoint):
        model = hb_mmdet.HieraDet("sam2_hiera_tiny", input_size=(64, 64), init_cfg=dict(
            type="Pretrained", checkpoint=checkpoint))
        model.init_weights()
        return model

    tag = "sam2.1_hiera_tiny:sa1b"
    with pytest.raises(CheckpointError, match=r"sam2\.1_hiera_tiny\.pt.*offline"):
        build(tag)
    trunk = save_random_sam2_release(in_download_cache(offline_cache, tag), "sam2_hiera_tiny")
    timm_file = str(tmp_path / "timm_sam2_hiera_tiny.pth")
    torch.save({**trunk, "head.fc.weight": torch.zeros(1, 768)}, timm_file)  # timm's names
    converted = str(tmp_path / "converted.pth")
    convert_checkpoint(in_download_cache(offline_cache, tag), converted, to="mmdet")
    for source in (tag, in_download_cache(offline_cache, tag), timm_file, converted):
        model = build(source)
        for key, value in trunk.items():
            assert torch.equal(model.state_dict()[key], value), (source, key)
    other = hb_mmdet.HieraDet("sam2_hiera_small", input_size=(64, 64),
                              init_cfg=dict(type="Pretrained", checkpoint=tag))
    with pytest.raises(CheckpointError, match="sam2_hiera_tiny weights, not sam2_hiera_small"):
        other.init_weights()


# ---------------------------------------------------------------------- the configs
def _config(name: str) -> Config:
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, name))
    cfg.model.backbone.input_size = (128, 128)
    return cfg


def test_configs_state_their_recipe():
    sam2 = Config.fromfile(os.path.join(CONFIG_DIR, SAM2_CONFIG))
    backbone = sam2.model.backbone
    assert (backbone.type, backbone.arch, backbone.drop_path_rate) == (
        "HieraDet", "sam2_hiera_base_plus", 0.2)
    assert backbone.init_cfg == dict(type="Pretrained", checkpoint="sam2.1_hiera_base_plus:sa1b")
    assert sam2.model.neck.in_channels == [112, 224, 448, 896]
    assert sam2.optim_wrapper.paramwise_cfg.decay_rate == 0.9
    abswin = Config.fromfile(os.path.join(CONFIG_DIR, ABSWIN_CONFIG))
    assert (abswin.model.backbone.type, abswin.model.backbone.arch) == (
        "Hiera", "hiera_small_abswin_256")
    assert abswin.model.backbone.init_cfg.checkpoint == "hiera_small_abswin_256:sbb2_e200_in12k"
    assert abswin.optim_wrapper.paramwise_cfg.decay_rate == 1.0
    for cfg, name in ((sam2, SAM2_CONFIG), (abswin, ABSWIN_CONFIG)):
        with open(os.path.join(CONFIG_DIR, name)) as f:
            assert "The recipe is ours" in " ".join(f.read().replace("#", " ").split())
        assert cfg.optim_wrapper.optimizer.lr == 3.5e-5
        assert cfg.optim_wrapper.optimizer.weight_decay == 0.1
        assert cfg.model.data_preprocessor.batch_augments[0].size == (1024, 1024)
        assert cfg.max_epochs == 25 and cfg.train_dataloader.dataset.times == 4  # 100 epochs


def test_sam2_config_builds_and_loads_weights(offline_cache):
    tag = "sam2.1_hiera_base_plus:sa1b"
    trunk = save_random_sam2_release(in_download_cache(offline_cache, tag), "sam2_hiera_base_plus")
    detector = _build(_config(SAM2_CONFIG).model)
    detector.init_weights()
    own = detector.backbone.state_dict()
    assert set(own) - set(trunk) == {k for k in own if k.startswith("out_norms.")}
    for key, value in trunk.items():
        assert torch.equal(own[key], value), key


def test_abswin_config_builds_and_loads_weights(offline_cache):
    import timm
    from safetensors.torch import save_file

    tag = "hiera_small_abswin_256:sbb2_e200_in12k"
    timm_model = timm.create_model("hiera_small_abswin_256", pretrained=False, num_classes=11821)
    state = {k: v.contiguous() for k, v in timm_model.state_dict().items()}
    save_file(state, in_download_cache(offline_cache, tag))
    detector = _build(_config(ABSWIN_CONFIG).model)
    detector.init_weights()
    own = detector.backbone.state_dict()
    for key in ("pos_embed", "pos_embed_win", "blocks.15.ls2.gamma", "blocks.3.attn.qkv.weight"):
        assert torch.equal(own[key], state[key]), key
    assert not [k for k in own if k not in state and not k.startswith("out_norms.")]
