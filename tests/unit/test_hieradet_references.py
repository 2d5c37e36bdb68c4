"""HieraDet against its second and third judges, beside timm (``test_hieradet.py``): SAM 2's
own trunk (``sam2.modeling.backbones.hieradet.Hiera``, built with the trunk arguments of the
SAM 2.1 yaml configs) and Hugging Face transformers' ``Sam2HieraDetModel`` / ``Sam2Model``.

Each judge gets sharpened random weights, which are saved in the judge's own layout (SAM 2's
release file ``{"model": {"image_encoder.trunk.*": ...}}``; transformers' ``save_pretrained``
folder, safetensors, or a ``.bin`` state dict), read back through our converter, loaded strictly
into our ``HieraDet``, and every stage map is compared (``max |ours - ref| / max |ref|`` within
``FP32_RTOL``, :mod:`hiera_backbones.parity`).

The judges are not part of the pinned stack: ``requirements/install_references.sh`` puts them
into their own folder and :mod:`references` adds it to ``sys.path`` for this module only; the
tests skip, saying how to install them, when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from helpers import sharpen_
from references import reference_modules

from hiera_backbones import build_backbone
from hiera_backbones.checkpoints import convert_checkpoint, read_backbone_weights
from hiera_backbones.models.hieradet import HIERADET_CONFIGS
from hiera_backbones.parity import assert_maps_close

#: Our zoo name -> SAM 2.1's config file (``sam2/configs/sam2.1/<file>.yaml``).
SAM2_YAML = {
    "sam2_hiera_tiny": "sam2.1_hiera_t",
    "sam2_hiera_small": "sam2.1_hiera_s",
    "sam2_hiera_base_plus": "sam2.1_hiera_b+",
    "sam2_hiera_large": "sam2.1_hiera_l",
}
CASES = [
    pytest.param("sam2_hiera_tiny", (1024, 1024), id="tiny-1024"),
    # 640: the 14 / 7 windows of stages 3-4 are padded (40 -> 42, 20 -> 21); not square.
    pytest.param("sam2_hiera_tiny", (640, 384), id="tiny-640x384"),
    pytest.param("sam2_hiera_base_plus", (256, 256), id="base_plus-256"),  # 2 heads, 14x14 bg
    pytest.param("sam2_hiera_small", (256, 256), marks=pytest.mark.slow, id="small-256"),
    pytest.param("sam2_hiera_large", (256, 256), marks=pytest.mark.slow, id="large-256"),
    pytest.param("sam2_hiera_small", (1024, 1024), marks=pytest.mark.slow, id="small-1024"),
    pytest.param("sam2_hiera_base_plus", (1024, 1024), marks=pytest.mark.slow, id="b+-1024"),
    pytest.param("sam2_hiera_large", (1024, 1024), marks=pytest.mark.slow, id="large-1024"),
]


@pytest.fixture(scope="module")
def sam2_hieradet():
    with reference_modules("sam2", "sam2.modeling.backbones.hieradet") as (sam2, module):
        yield Path(sam2.__file__).parent, module


@pytest.fixture(scope="module")
def hf_sam2():
    package = "transformers.models.sam2"
    with reference_modules(f"{package}.configuration_sam2", f"{package}.modeling_sam2") as (
        config, modeling,
    ):
        yield config, modeling


def _x(size, batch=1):
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))


def _ours(src, **build) -> torch.nn.Module:
    weights = read_backbone_weights(str(src))
    model = build_backbone(weights.arch, **{**weights.build_kwargs, **build}).eval()
    model.load_state_dict(weights.backbone, strict=True)
    return model


# ----------------------------------------------------------------------------- SAM 2's own trunk
def _sam2_trunk_args(package_dir: Path, name: str) -> dict:
    """The trunk arguments of SAM 2.1's yaml config (the ``_target_`` dropped)."""
    cfg_file = package_dir / "configs" / "sam2.1" / f"{SAM2_YAML[name]}.yaml"
    trunk = dict(yaml.safe_load(cfg_file.read_text())["model"]["image_encoder"]["trunk"])
    assert trunk.pop("_target_") == "sam2.modeling.backbones.hieradet.Hiera"
    return trunk


def test_yaml_trunks_are_our_zoo(sam2_hieradet):
    """SAM 2.1's four trunks, built from its yaml files, have our zoo's geometry (the defaults
    of SAM 2's ``Hiera`` filled in)."""
    package_dir, module = sam2_hieradet
    for name, cfg in HIERADET_CONFIGS.items():
        trunk = module.Hiera(**_sam2_trunk_args(package_dir, name))
        got = dict(
            embed_dim=trunk.patch_embed.proj.out_channels,
            num_heads=trunk.blocks[0].attn.num_heads,
            stages=tuple(b - a for a, b in zip([-1, *trunk.stage_ends], trunk.stage_ends)),
            global_att_blocks=tuple(trunk.global_att_blocks),
            window_spec=tuple(trunk.window_spec),
            global_pos_size=tuple(trunk.window_pos_embed_bkg_spatial_size),
        )
        assert got == {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}, name


@pytest.mark.parametrize("name, size", CASES)
def test_matches_sam2_release_layout(sam2_hieradet, tmp_path, name, size):
    package_dir, module = sam2_hieradet
    torch.manual_seed(0)
    reference = sharpen_(module.Hiera(**_sam2_trunk_args(package_dir, name))).eval()
    trunk = {"image_encoder.trunk." + k: v for k, v in reference.state_dict().items()}
    neck = {"image_encoder.neck.convs.0.conv.weight": torch.randn(256, 768, 1, 1)}
    src = tmp_path / f"sam2.1_{name.removeprefix('sam2_')}.pt"
    torch.save({"model": {**trunk, **neck}}, src)
    ours = _ours(src)
    assert ours.arch == name
    x = _x(size)
    with torch.no_grad():
        ref = reference(x)  # NCHW maps at every stage end
        got = ours(x)
    errors = assert_maps_close(got, ref)
    assert [e.shape[2:] for e in errors] == [(size[0] // s, size[1] // s) for s in (4, 8, 16, 32)]


# ----------------------------------------------------------------------------- transformers
def _hf_trunk_config(config_module, name: str):
    """transformers' ``Sam2HieraDetConfig`` for our zoo entry ``name``."""
    cfg = HIERADET_CONFIGS[name]
    stages = len(cfg["stages"])
    return config_module.Sam2HieraDetConfig(
        hidden_size=cfg["embed_dim"],
        num_attention_heads=cfg["num_heads"],
        blocks_per_stage=list(cfg["stages"]),
        embed_dim_per_stage=[cfg["embed_dim"] * 2**i for i in range(stages)],
        num_attention_heads_per_stage=[cfg["num_heads"] * 2**i for i in range(stages)],
        window_size_per_stage=list(cfg["window_spec"]),
        global_attention_blocks=list(cfg["global_att_blocks"]),
        window_positional_embedding_background_size=list(cfg["global_pos_size"]),
    )


def _hf_maps(trunk, x) -> list[torch.Tensor]:
    """transformers' trunk returns its stage-end maps channels-last ``(B, H, W, C)``."""
    with torch.no_grad():
        out = trunk(pixel_values=x)
    maps = out.intermediate_hidden_states
    assert maps[0].shape[-1] == trunk.config.embed_dim_per_stage[0]  # NHWC, checked
    return [m.permute(0, 3, 1, 2) for m in maps]


@pytest.mark.parametrize("name, size", CASES)
def test_matches_transformers_hieradet(hf_sam2, tmp_path, name, size):
    """``Sam2HieraDetModel.save_pretrained`` folder (config.json + model.safetensors)."""
    config, modeling = hf_sam2
    torch.manual_seed(0)
    reference = sharpen_(modeling.Sam2HieraDetModel(_hf_trunk_config(config, name))).eval()
    reference.save_pretrained(tmp_path / "hf")
    ours = _ours(tmp_path / "hf")
    assert ours.arch == name
    weights = read_backbone_weights(str(tmp_path / "hf"))
    assert weights.source_format == "sam2-hf" and weights.dropped == []
    x = _x(size)
    assert_maps_close(_no_grad(ours, x), _hf_maps(reference, x))


def _no_grad(model, x):
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module")
def hf_sam2_model(hf_sam2, tmp_path_factory):
    """A whole transformers ``Sam2Model`` with the tiny trunk, saved with ``save_pretrained``."""
    config, modeling = hf_sam2
    torch.manual_seed(0)
    sam_cfg = config.Sam2Config(
        vision_config=config.Sam2VisionConfig(
            backbone_config=_hf_trunk_config(config, "sam2_hiera_tiny")
        )
    )
    model = modeling.Sam2Model(sam_cfg).eval()
    sharpen_(model.vision_encoder.backbone)
    folder = tmp_path_factory.mktemp("hf_sam2_model")
    model.save_pretrained(folder)
    return model, folder


@pytest.mark.parametrize("target", ["backbone", "detectron2", "mmdet"])
def test_transformers_sam2_model_converts(hf_sam2_model, tmp_path, target):
    """``Sam2Model``: the vision encoder's trunk is kept, the rest of SAM 2 dropped and listed."""
    model, folder = hf_sam2_model
    meta = convert_checkpoint(str(folder), str(tmp_path / "out.pth"), to=target)
    assert meta["arch"] == "sam2_hiera_tiny" and meta["source_format"] == "sam2-hf"
    state = model.state_dict()
    rest = sorted(k for k in state if not k.startswith("vision_encoder.backbone."))
    # save_pretrained may leave out tied or non-persistent tensors; never a trunk one.
    assert set(meta["dropped"]) <= set(rest) and meta["dropped"]
    assert {k.split(".")[0] for k in meta["dropped"]} >= {"mask_decoder", "prompt_encoder"}
    assert any(k.startswith("vision_encoder.neck.") for k in meta["dropped"])
    ours = _ours(tmp_path / "out.pth")
    x = _x((256, 256))
    assert_maps_close(_no_grad(ours, x), _hf_maps(model.vision_encoder.backbone, x))


def test_transformers_bin_and_verify(hf_sam2, tmp_path):
    """A ``.bin`` state dict (``torch.save(model.state_dict())``) and a lone safetensors file;
    ``--verify`` checks the result against timm's trunk holding the converted tensors."""
    from safetensors.torch import save_file

    config, modeling = hf_sam2
    torch.manual_seed(0)
    reference = sharpen_(modeling.Sam2HieraDetModel(_hf_trunk_config(config, "sam2_hiera_tiny")))
    state = {k: v.contiguous() for k, v in reference.eval().state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    save_file(state, tmp_path / "model.safetensors")
    x = _x((256, 256))
    ref = _hf_maps(reference, x)
    for src in ("pytorch_model.bin", "model.safetensors"):
        meta = convert_checkpoint(str(tmp_path / src), str(tmp_path / f"{src}.pth"),
                                  input_size=(256, 256), verify=True)
        assert meta["source_format"] == "sam2-hf" and meta["verify_max_rel_error"] < 1e-5
        assert_maps_close(_no_grad(_ours(tmp_path / f"{src}.pth"), x), ref)
