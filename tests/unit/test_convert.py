"""Checkpoint conversion: every Hiera source format into every target, with parity, and every
malformed input refused cleanly. Sources are built from the reference code (hiera-transformer,
timm) with random weights, saved in the formats those projects publish."""

from __future__ import annotations

import os
import pickle
import random
import re
import subprocess
import sys

import hiera
import pytest
import timm
import torch
from checkpoint_files import (
    load_with_detectron2,
    load_with_mmengine,
    save_hub_folder,
    save_official,
    save_official_mae,
)
from helpers import backbone_state, sharpen_
from tool_scripts import ROOT

from hiera_backbones import build_backbone
from hiera_backbones.checkpoints import (
    OWN_FORMAT,
    CheckpointError,
    convert_checkpoint,
    load_backbone_checkpoint,
    read_backbone_weights,
)
from hiera_backbones.checkpoints.cli import main as cli_main
from hiera_backbones.parity import FP32_RTOL, assert_maps_close, official_stage_maps


# ----------------------------------------------------------------------------- sources
@pytest.fixture(scope="module")
def official_tiny():
    torch.manual_seed(0)
    return sharpen_(hiera.hiera_tiny_224(pretrained=False)).eval()


@pytest.fixture(scope="module")
def sources(tmp_path_factory, official_tiny):
    """One file per source format, all holding ``official_tiny``'s backbone weights."""
    root = tmp_path_factory.mktemp("sources")
    state = official_tiny.state_dict()
    out = {}
    out["official-ft"] = save_official(root / "hiera_tiny_224.pth", official_tiny)
    out["official-mae"] = save_official_mae(root / "mae_hiera_tiny_224.pth", "hiera_tiny_224",
                                            backbone_state(official_tiny))
    out["hub"] = save_hub_folder(root / "hub", official_tiny)

    timm_model = timm.create_model("hiera_tiny_224", pretrained=False)
    timm_model.load_state_dict(timm.models.hiera.checkpoint_filter_fn(state, timm_model))
    out["timm"] = root / "timm_hiera_tiny.pth"
    torch.save(timm_model.state_dict(), out["timm"])

    for name, prefix, with_head in (
        ("hf-model", "", False), ("hf-cls", "hiera.", True), ("hf-mae", "hiera.", False)
    ):
        hf = to_hf_keys(state, (1, 2, 7, 2), prefix, with_head)
        if name == "hf-mae":
            hf.update({
                "encoder_norm.weight": torch.ones(768),
                "decoder.mask_token": torch.zeros(1, 1, 512),
                "multiscale_fusion.multi_scale_fusion_heads.0.weight": torch.zeros(768, 96, 4, 4),
            })
        out[name] = root / f"{name}.pth"
        torch.save(hf, out[name])
    return out


def to_hf_keys(state, depths, prefix, with_head):
    """Official -> transformers names, written from ``convert_hiera_to_hf.py``'s table, so the
    test does not need transformers installed."""
    ends = [sum(depths[: i + 1]) for i in range(len(depths))]
    out = {}
    for k, v in state.items():
        if k.startswith("blocks."):
            g = int(k.split(".")[1])
            stage = next(i for i, e in enumerate(ends) if g < e)
            layer = g - (ends[stage - 1] if stage else 0)
            rest = k.split(".", 2)[2].replace("norm1.", "layernorm_before.")
            rest = rest.replace("norm2.", "layernorm_after.")
            out[f"{prefix}encoder.stages.{stage}.layers.{layer}.{rest}"] = v
        elif k.startswith("patch_embed.proj."):
            out[f"{prefix}embeddings.patch_embeddings.projection.{k.rsplit('.', 1)[1]}"] = v
        elif k == "pos_embed":
            out[f"{prefix}embeddings.position_embeddings"] = v
        elif k.startswith("norm."):
            out[f"{prefix}pooler.layernorm.{k.rsplit('.', 1)[1]}"] = v
        elif k.startswith("head.projection.") and with_head:
            out[f"classifier.{k.rsplit('.', 1)[1]}"] = v
    return out


# ----------------------------------------------------------------------------- parity
EXPECTED_FORMAT = {
    "official-ft": "hiera-official", "official-mae": "hiera-official", "hub": "hiera-hub",
    "timm": "hiera-timm", "hf-model": "hiera-hf", "hf-cls": "hiera-hf", "hf-mae": "hiera-hf",
}


@pytest.mark.parametrize("source", sorted(EXPECTED_FORMAT))
def test_every_source_gives_official_features(source, sources, official_tiny):
    weights = read_backbone_weights(str(sources[source]))
    assert weights.source_format == EXPECTED_FORMAT[source]
    assert weights.arch == "hiera_tiny_224" and weights.build_kwargs["input_size"] == (224, 224)
    model = build_backbone("hiera_tiny_224").eval()
    model.load_state_dict(weights.backbone, strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        got = model(x)
    assert_maps_close(got, official_stage_maps(official_tiny, x))


def test_mae_tensors_are_dropped_and_reported(sources, capsys, tmp_path):
    dst = tmp_path / "b.pth"
    assert cli_main([str(sources["official-mae"]), str(dst), "--to", "backbone"]) == 0
    out = capsys.readouterr().out
    assert "dropped 110 pretraining-only tensors" in out
    saved = torch.load(dst, weights_only=True)
    dropped = saved["meta"]["dropped"]
    assert {"mask_token", "decoder_pos_embed", "encoder_norm.weight"} <= set(dropped)
    assert any(k.startswith("multi_scale_fusion_heads.") for k in dropped)
    assert not any(k.startswith(("decoder", "encoder_norm", "norm.", "head.")) for k in
                   saved["state_dict"])


def test_keep_head_keeps_the_classifier(sources, tmp_path, official_tiny):
    dst = tmp_path / "cls.pth"
    convert_checkpoint(str(sources["timm"]), str(dst), to="backbone", keep_head=True)
    saved = torch.load(dst, weights_only=True)
    assert saved["meta"]["build_kwargs"]["num_classes"] == 1000
    model = build_backbone("hiera_tiny_224", num_classes=1000).eval()
    model.load_state_dict(saved["state_dict"], strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        probs = model.forward_logits(x).softmax(-1)
        assert_maps_close([probs], [official_tiny(x)])
    with pytest.raises(CheckpointError, match="no classifier head"):
        convert_checkpoint(str(sources["official-mae"]), str(tmp_path / "x.pth"), keep_head=True)


@pytest.mark.parametrize("target", ["backbone", "detectron2", "mmdet", "mmaction"])
def test_targets_hold_only_tensors_with_metadata(target, sources, tmp_path):
    dst = tmp_path / f"{target}.pth"
    meta = convert_checkpoint(str(sources["official-ft"]), str(dst), to=target, verify=True)
    assert meta["verify_max_rel_error"] <= FP32_RTOL
    saved = torch.load(dst, weights_only=True)  # tensors and plain containers only
    state = saved["model" if target == "detectron2" else "state_dict"]
    prefix = {"backbone": "", "detectron2": "backbone.bottom_up.", "mmdet": "backbone.",
              "mmaction": "backbone."}[target]
    assert all(k.startswith(prefix) for k in state)
    assert len(state) == len(build_backbone("hiera_tiny_224").state_dict()) == 153
    m = saved["meta"]
    assert m["arch"] == "hiera_tiny_224" and m["source_format"] == "hiera-official"
    assert re.fullmatch(r"[0-9a-f]{64}", m["source_sha256"])


def test_safetensors_output_and_reconversion(sources, tmp_path, official_tiny):
    st = tmp_path / "b.safetensors"
    convert_checkpoint(str(sources["hub"]), str(st), to="backbone")
    from safetensors import safe_open

    with safe_open(str(st), "pt") as f:
        assert '"hiera_tiny_224"' == f.metadata()["arch"]
    # Our own files convert onward, keeping the architecture metadata.
    again = tmp_path / "d2.pth"
    meta = convert_checkpoint(str(st), str(again), to="detectron2", verify=True)
    assert meta["source_format"] == "hiera_backbones"  # OWN_FORMAT, as in the meta record
    assert meta["verify_max_rel_error"] <= FP32_RTOL


def test_own_format_has_one_name_and_the_old_one_still_reads(sources, tmp_path, capsys):
    """The files we write are ``hiera_backbones`` everywhere (the meta record's ``format`` and
    ``source_format`` when re-read); ``--from hiera-backbones`` (the old spelling) still works."""
    own = tmp_path / "own.pth"
    meta = convert_checkpoint(str(sources["official-ft"]), str(own), to="mmdet")
    assert meta["format"] == OWN_FORMAT == "hiera_backbones"
    assert read_backbone_weights(str(own)).source_format == OWN_FORMAT
    assert read_backbone_weights(str(own), "hiera-backbones").source_format == OWN_FORMAT
    code, out, _ = run_cli_in_process(capsys, own, tmp_path / "again.pth", "--to", "backbone",
                                      "--from", "hiera-backbones")
    assert code == 0 and f"({OWN_FORMAT})" in out
    with pytest.raises(CheckpointError, match="has no hiera_backbones metadata"):
        read_backbone_weights(str(sources["official-ft"]), OWN_FORMAT)


def test_input_size_resizes_pos_embed_once(sources, tmp_path):
    dst = tmp_path / "b1024.pth"
    convert_checkpoint(str(sources["official-mae"]), str(dst), input_size=(512, 768), verify=True)
    saved = torch.load(dst, weights_only=True)
    assert saved["state_dict"]["pos_embed"].shape == (1, 128 * 192, 96)
    model = build_backbone("hiera_tiny_224", input_size=(512, 768))
    load_backbone_checkpoint(model, str(dst))
    # The same result as loading the 224 file into a model built at that size.
    other = build_backbone("hiera_tiny_224", input_size=(512, 768))
    load_backbone_checkpoint(other, str(sources["official-ft"]))
    assert torch.equal(model.pos_embed, other.pos_embed)


def test_video_mae_checkpoint(tmp_path):
    torch.manual_seed(0)
    src = save_official_mae(tmp_path / "mae_hiera_base_16x224.pth", "hiera_base_16x224")
    dst = tmp_path / "mmaction.pth"
    meta = convert_checkpoint(str(src), str(dst), to="mmaction", input_size=(8, 224, 224))
    assert meta["arch"] == "hiera_base_16x224" and meta["build_kwargs"]["input_size"] == [8, 224,
                                                                                            224]
    state = torch.load(dst, weights_only=True)["state_dict"]
    assert state["backbone.pos_embed_temporal"].shape == (1, 4, 96)
    model = build_backbone("hiera_base_16x224", input_size=(8, 224, 224))
    model.load_state_dict({k[len("backbone."):]: v for k, v in state.items()}, strict=True)


# ----------------------------------------------------------------------------- framework loaders
def test_detectron2_checkpointer_loads_with_no_missing_keys(sources, tmp_path):
    dst = tmp_path / "d2.pth"
    convert_checkpoint(str(sources["official-mae"]), str(dst), to="detectron2")
    backbone = build_backbone("hiera_tiny_224")
    incompatible = load_with_detectron2(str(dst), backbone)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    ref = torch.load(dst, weights_only=True)["model"]
    assert torch.equal(backbone.blocks[3].attn.qkv.weight,
                       ref["backbone.bottom_up.blocks.3.attn.qkv.weight"])


@pytest.mark.parametrize("target", ["mmdet", "mmaction"])
def test_mmengine_loaders_load_with_no_missing_keys(target, sources, tmp_path):
    dst = tmp_path / f"{target}.pth"
    convert_checkpoint(str(sources["hf-cls"]), str(dst), to=target)
    load_with_mmengine(str(dst), build_backbone("hiera_tiny_224"))  # raises on any missing key


# ----------------------------------------------------------------------------- bad inputs
def run_cli_in_process(capsys, *args):
    code = cli_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _bad_files(tmp_path, sources):
    good = sources["official-ft"].read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(random.Random(0).randbytes(4096))
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    resnet = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18").state_dict(), resnet)
    vit = tmp_path / "vit.pth"
    torch.save({"model": timm.create_model("vit_tiny_patch16_224").state_dict()}, vit)
    swin = tmp_path / "swin.pth"
    torch.save(timm.create_model("swin_tiny_patch4_window7_224").state_dict(), swin)
    state = torch.load(sources["official-ft"], weights_only=True)["model_state"]
    wrong_shape = tmp_path / "wrong_shape.pth"
    torch.save({"model_state": {**state, "blocks.1.mlp.fc1.weight": torch.zeros(10, 10)}},
               wrong_shape)
    missing = tmp_path / "missing.pth"
    torch.save({"model_state": {k: v for k, v in state.items() if k != "blocks.4.norm2.bias"}},
               missing)
    extra = tmp_path / "extra.pth"
    torch.save({"model_state": {**state, "blocks.1.gamma": torch.zeros(3)}}, extra)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    return {
        "truncated": (truncated, r"truncated or corrupt.*cut short"),
        "garbage": (garbage, r"not a readable PyTorch checkpoint"),
        "empty": (empty, r"is empty"),
        "resnet": (resnet, r"unrecognised checkpoint format"),
        "vit": (vit, r"converting a ViT needs the target HVT variant \(--arch\)"),
        "swin": (swin, r"unrecognised checkpoint format"),
        "wrong_shape": (wrong_shape, r"does not fit hiera_tiny_224: .*wrong shapes.*"
                                     r"blocks\.1\.mlp\.fc1\.weight"),
        "missing": (missing, r"1 missing \(blocks\.4\.norm2\.bias\)"),
        "extra": (extra, r"does not fit hiera_tiny_224: 1 unexpected \(blocks\.1\.gamma\)"),
        "bad_safetensors": (bad_st, r"not a readable safetensors file"),
        "absent": (tmp_path / "nope.pth", r"does not exist"),
    }


def test_every_bad_input_is_refused_with_one_message_and_no_output(sources, tmp_path, capsys):
    for name, (path, pattern) in _bad_files(tmp_path, sources).items():
        dst = tmp_path / f"out_{name}.pth"
        code, out, err = run_cli_in_process(capsys, path, dst, "--to", "mmdet")
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert re.search(pattern, lines[0]), (name, lines[0])
        assert "Traceback" not in err and not out
        assert not dst.exists(), name
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_not_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model_state": {"x": _RunsCode(str(marker))}}, evil)
    legacy = tmp_path / "evil_legacy.pth"
    with open(legacy, "wb") as f:
        pickle.dump({"model_state": _RunsCode(str(marker))}, f)
    for path in (evil, legacy):
        code, _, err = run_cli_in_process(capsys, path, tmp_path / "o.pth", "--to", "backbone")
        assert code == 2 and "pickled Python objects" in err and "--allow-pickle" in err
        assert not marker.exists()


def test_allow_pickle_loads_trusted_legacy_files_with_a_warning(sources, tmp_path):
    state = torch.load(sources["official-ft"], weights_only=True)
    legacy = tmp_path / "legacy.pth"
    torch.save({**state, "args": {"lr": 1.0}, "optimizer": object.__new__(_Opaque)}, legacy)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        read_backbone_weights(str(legacy))
    with pytest.warns(UserWarning, match="weights_only=False"):
        weights = read_backbone_weights(str(legacy), allow_pickle=True)
    assert weights.arch == "hiera_tiny_224"


class _Opaque:
    pass


def test_existing_output_needs_force_and_failed_writes_leave_nothing(sources, tmp_path, capsys,
                                                                      monkeypatch):
    dst = tmp_path / "out.pth"
    dst.write_bytes(b"keep me")
    code, _, err = run_cli_in_process(capsys, sources["official-ft"], dst, "--to", "backbone")
    assert code == 2 and "exists; pass --force" in err and dst.read_bytes() == b"keep me"

    def failing_save(obj, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        convert_checkpoint(str(sources["official-ft"]), str(dst), force=True)
    assert dst.read_bytes() == b"keep me"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_offline_official_name_asks_for_a_local_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HIERA_BACKBONES_CACHE", str(tmp_path / "cache"))

    def no_network(url, dst, progress=True):
        import urllib.error

        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    code, _, err = run_cli_in_process(capsys, "hiera_base_224:mae_in1k", tmp_path / "o.pth",
                                      "--to", "detectron2")
    assert code == 2
    assert "mae_hiera_base_224.pth" in err and "pass its local path" in err
    code, _, err = run_cli_in_process(capsys, "hiera_base_224:bogus", tmp_path / "o.pth",
                                      "--to", "detectron2")
    assert code == 2 and "known official checkpoint" in err


def test_command_line_entry_points(sources, tmp_path):
    dst = tmp_path / "d2.pth"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "convert.py"), str(sources["timm"]),
         str(dst), "--to", "detectron2"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and dst.exists()
    script = os.path.join(os.path.dirname(sys.executable), "hiera-convert")
    proc = subprocess.run([script, str(tmp_path / "missing.pth"), str(tmp_path / "o.pth"),
                           "--to", "mmdet"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing.pth'} does not exist"
    ]


def test_write_atomic_keeps_the_old_file_when_a_write_fails(tmp_path):
    from hiera_backbones.checkpoints.io import write_atomic

    dst = tmp_path / "results.json"
    write_atomic(str(dst), lambda tmp: open(tmp, "w").write("old"))
    seen = []

    def failing(tmp):
        seen.append(tmp)
        open(tmp, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(str(dst), failing)
    assert seen[0].endswith("results.json")  # same suffix: writers that go by it still work
    assert dst.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["results.json"]
    assert dst.stat().st_mode & 0o777 == 0o666 & ~_umask()  # as open() would create it


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
