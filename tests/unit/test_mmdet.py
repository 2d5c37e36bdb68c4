"""MMDetection 3.x integration without training: registered backbones and the light import,
the backbones under the ``backbone.`` prefix, LayerNorm2d, a stock config with our backbone dict
(one loss and backward), layer-wise lr decay, pretrained loading via ``init_cfg``.

Training runs (every shipped config, end to end on the shapes set, resume, ``tools/mm_test.py``,
``torchrun``) are ``tests/e2e/test_mmdet_training.py``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv.ops")
# pycocotools warns once per decoded mask under numpy 2 (thousands of lines otherwise).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

from frameworks import MMDET_CONFIGS, one_thread  # noqa: E402
from mmengine.config import Config  # noqa: E402
from tool_scripts import ROOT  # noqa: E402

import hiera_backbones.mmdet as hb_mmdet  # noqa: E402
from hiera_backbones import build_backbone  # noqa: E402
from hiera_backbones.checkpoints import CheckpointError, convert_checkpoint  # noqa: E402

CONFIG_DIR = str(MMDET_CONFIGS)
DEMO = os.path.join(CONFIG_DIR, "mask-rcnn_hiera-mini_fpn_coco-shapes.py")
SIZE = 64
TINY = dict(arch="hiera_tiny_224", embed_dim=32, num_heads=1, stages=(1, 1, 2, 1))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


# ---------------------------------------------------------------------- registration, modules
def test_registered_and_light_import():
    from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

    assert MODELS.get("Hiera") is hb_mmdet.Hiera
    assert MODELS.get("HVT") is hb_mmdet.HVT
    assert MODELS.get("LayerNorm2d") is hb_mmdet.LayerNorm2d
    assert (
        OPTIM_WRAPPER_CONSTRUCTORS.get("LayerDecayOptimWrapperConstructor")
        is hb_mmdet.LayerDecayOptimWrapperConstructor
    )
    # The package and the shared helpers never import a framework themselves.
    code = (
        "import sys, hiera_backbones, hiera_backbones.openmmlab.loading; "
        "bad = [m for m in ('mmdet', 'mmengine', 'mmcv') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_backbones_are_our_models_under_backbone_prefix():
    from mmengine.model import BaseModule

    from hiera_backbones.models import HVT, Hiera

    hiera = hb_mmdet.Hiera(**TINY, input_size=(SIZE, SIZE))
    plain = build_backbone("hiera_tiny_224", embed_dim=32, num_heads=1, stages=(1, 1, 2, 1),
                           input_size=(SIZE, SIZE), out_norm=True)
    assert isinstance(hiera, BaseModule) and isinstance(hiera, Hiera)
    # Same parameter names as our model (so converter output sits directly under backbone.).
    assert hiera.state_dict().keys() == plain.state_dict().keys()
    feats = hiera(torch.randn(2, 3, 96, 128))
    assert [tuple(f.shape) for f in feats] == [
        (2, 32, 24, 32), (2, 64, 12, 16), (2, 128, 6, 8), (2, 256, 3, 4)]
    assert all(f.is_contiguous() for f in feats)

    hvt = hb_mmdet.HVT("hvt_ti_1", input_size=(SIZE, SIZE), out_indices=(0, 1))
    assert isinstance(hvt, HVT) and hvt.pooling == "2d" and hvt.out_strides == [4, 8]
    assert [tuple(f.shape) for f in hvt(torch.randn(1, 3, 64, 96))] == [
        (1, 192, 16, 24), (1, 192, 8, 12)]

    with pytest.raises(ValueError, match="unknown Hiera arch"):
        hb_mmdet.Hiera("hiera_base_16x224")  # video models are not detection backbones
    with pytest.raises(ValueError, match="unknown HVT arch"):
        hb_mmdet.HVT("hvt_xl")
    with pytest.raises(ValueError, match="2D maps"):
        hb_mmdet.HVT("hvt_ti_1", pooling="1d")
    with pytest.raises(ValueError, match="multiple of 32"):
        hiera(torch.randn(1, 3, 100, 128))


def test_layernorm2d_matches_channel_layernorm_and_is_contiguous():
    norm = hb_mmdet.LayerNorm2d(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 8, 5, 7)
    mean = x.mean(1, keepdim=True)
    var = x.var(1, keepdim=True, unbiased=False)
    ref = (x - mean) / torch.sqrt(var + 1e-6)
    ref = ref * norm.weight[:, None, None] + norm.bias[:, None, None]
    out = norm(x)
    # Unit-variance outputs (|x| < ~5) from an 8-channel mean and variance: fp32 rounding is
    # ~1e-6 here, so 1e-5 only fails for a wrong formula or axis.
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # mmcv's RoIAlign reads raw NCHW memory: a permuted view would scramble RoI features.
    assert out.is_contiguous()


def test_stock_mmdet_config_plus_one_backbone_dict(tmp_path):
    """The promise of the README: a stock MMDetection config, the import line and a backbone
    dict (plus the FPN's input widths) give a working detector."""
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.registry import init_default_scope

    path = tmp_path / "mask-rcnn_hiera-t_fpn_1x_coco.py"
    path.write_text(
        "_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'\n"
        "custom_imports = dict(imports=['hiera_backbones.mmdet'], allow_failed_imports=False)\n"
        "model = dict(\n"
        "    backbone=dict(_delete_=True, type='Hiera', arch='hiera_tiny_224',\n"
        "                  input_size=(64, 64), drop_path_rate=0.1),\n"
        "    neck=dict(in_channels=[96, 192, 384, 768]))\n"
    )
    cfg = Config.fromfile(str(path))
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    model.init_weights()
    batch = demo_mm_inputs(1, [(3, 64, 96)], num_items=[2], num_classes=80, with_mask=True)
    data = model.data_preprocessor(batch, True)
    total, _ = model.parse_losses(model(**data, mode="loss"))
    total.backward()
    assert torch.isfinite(total)
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None


# ---------------------------------------------------------------------- layer-wise lr decay
def test_layer_decay_constructor_rules():
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")
    cfg = Config.fromfile(DEMO)
    model = MODELS.build(cfg.model)
    optim = dict(
        type="OptimWrapper",
        constructor="LayerDecayOptimWrapperConstructor",
        paramwise_cfg=dict(decay_rate=0.5, norm_decay_mult=0.0),
        optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.1),
    )
    wrapper = build_optim_wrapper(model, optim)
    groups = {id(g["params"][0]): g for g in wrapper.optimizer.param_groups}
    params = dict(model.named_parameters())
    n = model.backbone.num_layers  # 5 blocks

    def group(name):
        return groups[id(params[name])]

    assert n == 5
    assert group("backbone.patch_embed.proj.weight")["lr"] == pytest.approx(0.5**n)
    assert group("backbone.pos_embed")["lr"] == pytest.approx(0.5**n)
    assert group("backbone.pos_embed")["weight_decay"] == 0.0  # no_weight_decay()
    assert group("backbone.blocks.0.attn.qkv.weight")["lr"] == pytest.approx(0.5 ** (n - 1))
    assert group("backbone.blocks.4.mlp.fc1.weight")["lr"] == pytest.approx(1.0)
    assert group("backbone.blocks.4.mlp.fc1.weight")["weight_decay"] == pytest.approx(0.1)
    assert group("backbone.blocks.2.norm1.weight")["weight_decay"] == 0.0  # norm_decay_mult
    assert group("backbone.out_norms.0.weight")["lr"] == pytest.approx(1.0)
    assert group("neck.lateral_convs.0.conv.weight")["lr"] == pytest.approx(1.0)
    assert group("neck.lateral_convs.0.ln.weight")["weight_decay"] == 0.0  # LayerNorm2d is a norm
    assert group("roi_head.bbox_head.fc_cls.weight")["weight_decay"] == pytest.approx(0.1)

    with pytest.raises(ValueError, match="decay_rate"):
        build_optim_wrapper(model, {**optim, "paramwise_cfg": dict(decay_rate=1.5)})
    resnet = MODELS.build(dict(Config.fromfile(DEMO).model, backbone=dict(
        type="ResNet", depth=18, init_cfg=None)))
    with pytest.raises(TypeError, match="get_layer_id"):
        build_optim_wrapper(resnet, optim)


# ---------------------------------------------------------------------- pretrained loading
def _official_hiera_file(path: str) -> dict[str, torch.Tensor]:
    """A random official hiera_tiny_224 checkpoint (``{"model_state": ...}`` with the head)."""
    import hiera

    torch.manual_seed(1)
    state = hiera.hiera_tiny_224(pretrained=False).state_dict()
    torch.save({"model_state": state}, path)
    return state


def _logged(fn) -> list[str]:
    """Runs ``fn()`` and returns the messages mmengine's current logger got meanwhile."""
    from mmengine.logging import MMLogger

    logger, messages = MMLogger.get_current_instance(), []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        fn()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return messages


def test_pretrained_init_cfg(tmp_path):
    from mmengine.runner import load_checkpoint

    official = str(tmp_path / "hiera_tiny_224.pth")
    state = _official_hiera_file(official)
    converted = str(tmp_path / "hiera_t_mmdet.pth")
    convert_checkpoint(official, converted, to="mmdet", input_size=(SIZE, SIZE))

    def build(checkpoint, **extra):
        model = hb_mmdet.Hiera("hiera_tiny_224", input_size=(SIZE, SIZE), init_cfg=dict(
            type="Pretrained", checkpoint=checkpoint, prefix="backbone.", **extra))
        model.init_weights()
        return model

    # Converter output, through init_cfg (prefix='backbone.').
    from_converted = build(converted)
    torch.testing.assert_close(from_converted.blocks[3].attn.qkv.weight,
                               state["blocks.3.attn.qkv.weight"])
    # Official file, converted on the fly (position embedding resized 56x56 -> 16x16, once).
    built = []
    messages = _logged(lambda: built.append(build(official)))
    from_official = built[0]
    assert any("hiera-official, converted on the fly" in m for m in messages), messages
    sd_a, sd_b = from_converted.state_dict(), from_official.state_dict()
    for k in sd_a:
        if not k.startswith("out_norms."):
            torch.testing.assert_close(sd_a[k], sd_b[k], rtol=0, atol=0, msg=k)
    assert from_official.pos_embed.shape == (1, 16 * 16, 96)

    # The converter output also loads with mmengine's own loader (load_from) into a detector,
    # with no backbone key missing.
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, "mask-rcnn_hiera-t_fpn_lsj-100e_coco.py"))
    cfg.model.backbone.update(init_cfg=None, input_size=(SIZE, SIZE))
    detector = MODELS.build(cfg.model)
    file_keys = set(torch.load(converted, weights_only=True)["state_dict"])
    wanted = {f"backbone.{k}" for k in detector.backbone.state_dict()}
    assert wanted - file_keys == {k for k in wanted if ".out_norms." in k}  # ours, not in files
    load_checkpoint(detector, converted, map_location="cpu")
    torch.testing.assert_close(detector.backbone.blocks[3].attn.qkv.weight,
                               state["blocks.3.attn.qkv.weight"])

    # A whole detector checkpoint (e.g. COCO-trained) gives its backbone via prefix.
    whole = str(tmp_path / "detector.pth")
    torch.save({"state_dict": detector.state_dict(), "meta": {"epoch": 3}}, whole)
    from_whole = build(whole)
    for k, v in detector.backbone.state_dict().items():
        torch.testing.assert_close(from_whole.state_dict()[k], v, rtol=0, atol=0)

    # Files that do not fit fail with one clear error.
    other = hb_mmdet.Hiera("hiera_small_224", input_size=(SIZE, SIZE),
                           init_cfg=dict(type="Pretrained", checkpoint=official))
    with pytest.raises(CheckpointError, match="hiera_tiny_224 weights, not hiera_small_224"):
        other.init_weights()
    with pytest.raises(CheckpointError, match="does not exist"):
        build(str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="needs checkpoint"):
        build(None)


def test_pretrained_init_cfg_hvt_official(tmp_path):
    """An official (1D pooling, patch 16) HVT release loads into the 2D, patch-4 detector
    backbone: converted on the fly exactly as the converter would."""
    from hiera_backbones.checkpoints import load_backbone_checkpoint

    torch.manual_seed(2)
    official = build_backbone("hvt_ti_1", num_classes=1000)
    path = str(tmp_path / "hvt_ti_1.pth")
    torch.save({"model": official.state_dict()}, path)
    model = hb_mmdet.HVT("hvt_ti_1", input_size=(SIZE, SIZE), patch_size=4,
                         init_cfg=dict(type="Pretrained", checkpoint=path))
    model.init_weights()
    reference = build_backbone("hvt_ti_1", pooling="2d", patch_size=4, input_size=(SIZE, SIZE))
    load_backbone_checkpoint(reference, path)
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    torch.testing.assert_close(model.blocks[5].mlp.fc2.weight,
                               official.blocks[5].mlp.fc2.weight)


