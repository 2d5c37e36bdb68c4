"""MMAction2 integration without training: video backbones, heads, layer decay, configs,
checkpoints, the synthetic data.

Everything runs on CPU. The Kinetics-400 and AVA v2.2 configs are built at a reduced size and run
one loss and one prediction step each; their pipelines run one sample of the synthetic sets. The
demo configs' training runs are ``tests/e2e/test_mmaction_training.py``.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys

import pytest
import torch

pytest.importorskip("mmaction")
pytest.importorskip("decord")

#: Every test resolves unscoped type names in MMAction2's registries.
pytestmark = pytest.mark.usefixtures("mmaction_scope")

from checkpoint_files import ReachesPastHistoryBuffer  # noqa: E402
from frameworks import (  # noqa: E402
    AVA_CONFIGS,
    AVA_DEMOS,
    K400_CONFIGS,
    MMACTION_CONFIGS,
    RECOG_DEMOS,
    one_thread,
    save_official_video_files,
)
from mmaction.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS, TRANSFORMS  # noqa: E402
from mmaction.structures import ActionDataSample  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402
from tool_scripts import ROOT  # noqa: E402

import hiera_backbones.mmaction as hm  # noqa: E402
from hiera_backbones.checkpoints import (  # noqa: E402
    OFFICIAL_CHECKPOINTS,
    CheckpointError,
    convert_checkpoint,
)
from hiera_backbones.data.video_data import (  # noqa: E402
    AVA_ACTIONS,
    MOTION_CLASSES,
    make_ava_shapes,
    make_motion_videos,
)
from hiera_backbones.models import build_backbone  # noqa: E402

CONFIGS = str(MMACTION_CONFIGS)


@pytest.fixture(autouse=True)
def _one_thread():
    """The models here are tiny: a second intra-op thread gains little, and when the cores are
    shared (another job running) OpenMP's spin-waiting made these tests up to 8x slower
    (measured). One thread keeps the run time predictable."""
    with one_thread():
        yield




# ---------------------------------------------------------------------- import and registries
def test_import_registers_everything():
    for name in ("Hiera", "HVT", "HieraHead", "HVTHead"):
        assert name in MODELS.module_dict
    assert "LayerDecayOptimWrapperConstructor" in OPTIM_WRAPPER_CONSTRUCTORS.module_dict
    hm.require_ava()  # FastRCNN and AVARoIHead are importable here
    from mmdet.registry import MODELS as DET_MODELS

    assert "AVARoIHead" in DET_MODELS.module_dict


def test_stock_import_in_fresh_interpreter():
    """``import hiera_backbones.mmaction`` on the stock wheel: works, one warning line."""
    out = subprocess.run(
        [sys.executable, "-c", "import hiera_backbones.mmaction"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    spec = importlib.util.find_spec("mmaction")
    wheel_bug = not any(
        os.path.isfile(os.path.join(root, "models", "localizers", "drn", "drn.py"))
        for root in spec.submodule_search_locations
    )
    if wheel_bug:
        assert len(lines) == 1 and "mmaction2#2714" in lines[0], lines
    else:
        assert not any("2714" in line for line in lines), lines


# ---------------------------------------------------------------------- backbones and heads
def _video(n=1, t=4, h=64, w=64):
    return torch.randn(n, 3, t, h, w)


def test_hiera_backbone_outputs_and_padding():
    kw = dict(embed_dim=16, num_heads=1, stages=(1, 1, 1, 1), input_size=(4, 64, 64))
    model = MODELS.build(dict(type="Hiera", **kw)).eval()
    assert model.out_strides == [32] and model.out_channels == [128]
    with torch.no_grad():
        out = model(_video())
    assert isinstance(out, torch.Tensor) and out.shape == (1, 128, 2, 2, 2)

    multi = MODELS.build(dict(type="Hiera", out_indices=(1, 3), **kw)).eval()
    with torch.no_grad():
        maps = multi(_video())
    assert [tuple(m.shape) for m in maps] == [(1, 32, 2, 8, 8), (1, 128, 2, 2, 2)]

    # Full-frame AVA inputs: H, W padded to multiples of 32 at the bottom/right.
    padded = MODELS.build(dict(type="Hiera", pad_input=True, **kw)).eval()
    padded.load_state_dict(model.state_dict())
    x = _video(h=64, w=80)
    with torch.no_grad():
        y = padded(x)
        ref = model(torch.nn.functional.pad(x, (0, 16, 0, 0)))
    assert y.shape == (1, 128, 2, 2, 3)
    torch.testing.assert_close(y, ref)
    with pytest.raises(ValueError, match="multiple of 32"):
        model(x)


def test_hvt_backbone_outputs():
    kw = dict(embed_dim=32, num_heads=2, depth=4, input_size=(4, 64, 64))
    s4 = MODELS.build(dict(type="HVT", arch="hvt_s_4", **kw)).eval()  # pools after 0, 3
    s1 = MODELS.build(dict(type="HVT", arch="hvt_s_1", **kw)).eval()  # pools after 0 only
    assert s4.out_strides == [64] and s1.out_strides == [32]
    with torch.no_grad():
        assert s4(_video()).shape == (1, 32, 2, 1, 1)
        assert s1(_video()).shape == (1, 32, 2, 2, 2)


def test_backbone_and_head_errors():
    with pytest.raises(ValueError, match="for video"):
        MODELS.build(dict(type="Hiera", arch="hiera_base_224"))
    with pytest.raises(ValueError, match="input_size must be"):
        MODELS.build(dict(type="Hiera", input_size=(224, 224)))
    with pytest.raises(ValueError, match="the head's in MMAction2"):
        MODELS.build(dict(type="Hiera", num_classes=400))
    with pytest.raises(ValueError, match="video model"):
        MODELS.build(dict(type="HVT", pooling="1d"))
    head = MODELS.build(dict(type="HieraHead", num_classes=4, in_channels=64))
    with pytest.raises(ValueError, match="in_channels"):
        head(torch.randn(2, 32, 1, 2, 2))
    with pytest.raises(ValueError, match="num_classes"):
        MODELS.build(dict(type="HieraHead", num_classes=0, in_channels=64))


def test_heads_match_the_official_classifiers():
    torch.manual_seed(0)
    x = torch.randn(2, 64, 2, 3, 3)
    tokens = x.flatten(2).transpose(1, 2)
    for kind in ("HieraHead", "HVTHead"):
        head = MODELS.build(dict(type=kind, num_classes=5, in_channels=64)).eval()
        head.init_weights()
        with torch.no_grad():
            for p in head.parameters():
                p.normal_()
            if kind == "HieraHead":  # official Hiera: mean, then norm
                ref = head.fc_cls(head.norm(tokens.mean(1)))
            else:  # official HVT: norm, then mean
                ref = head.fc_cls(head.norm(tokens).mean(1))
            torch.testing.assert_close(head(x), ref)
            torch.testing.assert_close(head((x[:, :8], x)), ref)  # tuple: the last map


# ---------------------------------------------------------------------- layer decay
def test_layer_decay_constructor():
    model = MODELS.build(dict(
        type="Recognizer3D",
        backbone=dict(type="Hiera", embed_dim=16, num_heads=1, stages=(1, 1, 2, 1),
                      input_size=(4, 64, 64)),
        cls_head=dict(type="HieraHead", num_classes=4, in_channels=128),
    ))
    wrapper = build_optim_wrapper(model, dict(
        type="OptimWrapper",
        constructor="LayerDecayOptimWrapperConstructor",
        paramwise_cfg=dict(decay_rate=0.5, norm_decay_mult=0.0),
        optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05),
    ))
    by_param = {id(p): g for g in wrapper.optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    layers = model.backbone.num_layers  # 5 blocks
    lr = {n: by_param[id(p)]["lr"] for n, p in named.items()}
    assert lr["backbone.patch_embed.proj.weight"] == pytest.approx(0.5**layers)
    assert lr["backbone.blocks.0.mlp.fc1.weight"] == pytest.approx(0.5 ** (layers - 1))
    assert lr[f"backbone.blocks.{layers - 1}.mlp.fc1.weight"] == pytest.approx(1.0)
    assert lr["cls_head.fc_cls.weight"] == pytest.approx(1.0)
    wd = {n: by_param[id(p)]["weight_decay"] for n, p in named.items()}
    assert wd["backbone.pos_embed_spatial"] == 0.0 and wd["cls_head.norm.weight"] == 0.0
    assert wd["backbone.blocks.0.mlp.fc1.weight"] == pytest.approx(0.05)


# ---------------------------------------------------------------------- configs
def _reduce(cfg: Config) -> None:
    """Shrinks the backbone (and the heads' widths with it) so any config builds in a second."""
    backbone = cfg.model.backbone
    backbone.init_cfg = None
    if backbone.type.endswith("Hiera"):
        backbone.update(embed_dim=16, stages=(1, 1, 1, 1), input_size=(4, 64, 64))
        channels = 128
    else:
        backbone.update(embed_dim=32, num_heads=2, depth=4, input_size=(4, 64, 64))
        channels = 32
    if "cls_head" in cfg.model:
        cfg.model.cls_head.in_channels = channels
        cfg.model.cls_head.init_cfg = None
    else:
        cfg.model.roi_head.bbox_head.in_channels = channels


def _full_size_channels_and_strides(backbone_cfg: dict) -> tuple[int, int]:
    cfg = {k: v for k, v in backbone_cfg.items() if k not in ("type", "init_cfg")}
    with torch.device("meta"):
        model = MODELS.build(dict(type=backbone_cfg["type"].split(".")[-1], **cfg))
    return model.out_channels[-1], model.out_strides[-1]


def _ava_sample(h: int, w: int, num_classes: int) -> ActionDataSample:
    sample = ActionDataSample()
    sample.set_metainfo(dict(img_shape=(h, w), video_id="v", timestamp=902))
    box = torch.tensor([[0.1 * w, 0.1 * h, 0.6 * w, 0.9 * h], [0.5 * w, 0.2 * h, 0.9 * w, 0.8 * h]])
    labels = torch.zeros(2, num_classes)
    labels[0, 1] = labels[1, 3] = labels[1, 5] = 1
    sample.proposals = InstanceData(bboxes=box.clone())
    sample.gt_instances = InstanceData(bboxes=box.clone(), labels=labels)
    return sample


def _check_pipelines(cfg: Config) -> None:
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        for step in cfg[loader].dataset.pipeline:
            TRANSFORMS.build(step)


def _run_pipelines(cfg: Config, motion_root, ava_root) -> dict[str, tuple[int, ...]]:
    """One sample of each split through the config's own dataset and pipeline, on the synthetic
    sets (paths and AVA timing swapped in): the input shape per split."""
    from mmaction.registry import DATASETS

    shapes = {}
    for loader in ("train_dataloader", "test_dataloader"):
        dataset = cfg[loader].dataset.to_dict()
        if dataset["type"] == "AVADataset":
            ann = os.path.join(ava_root, "annotations")
            split = "val" if dataset.get("test_mode") else "train"
            dataset.update(
                ann_file=os.path.join(ann, f"ava_{split}_v2.2.csv"),
                exclude_file=os.path.join(ann, f"ava_{split}_excluded_timestamps_v2.2.csv"),
                proposal_file=os.path.join(
                    ann, f"ava_dense_proposals_{split}.FAIR.recall_93.9.pkl"),
                label_file=os.path.join(ann, "ava_action_list_v2.2_for_activitynet_2019.pbtxt"),
                data_prefix=dict(img=os.path.join(ava_root, "rawframes")),
                fps=8, timestamp_start=900, timestamp_end=905)
        else:
            split = "train" if loader == "train_dataloader" else "val"
            dataset.update(ann_file=os.path.join(motion_root, f"{split}_list_videos.txt"),
                           data_prefix=dict(video=os.path.join(motion_root, f"videos_{split}")))
        item = DATASETS.build(dataset)[0]
        item = item[0] if isinstance(item, list) else item  # RepeatAugDataset: the repeats
        shapes[loader] = tuple(item["inputs"].shape)
    return shapes


@pytest.mark.parametrize("name", K400_CONFIGS + AVA_CONFIGS)
def test_full_configs_build_and_step(name, motion_data, ava_data):
    cfg = Config.fromfile(os.path.join(CONFIGS, name))
    backbone = cfg.model.backbone
    # Official weights by name, all known to the converter.
    assert backbone.init_cfg.type == "Pretrained"
    assert backbone.init_cfg.checkpoint in OFFICIAL_CHECKPOINTS
    channels, stride = _full_size_channels_and_strides(backbone)
    ava = cfg.model.type == "FastRCNN"
    if ava:
        roi = cfg.model.roi_head
        assert roi.bbox_head.in_channels == channels
        assert roi.bbox_roi_extractor.featmap_stride == stride == 32
        assert roi.bbox_head.spatial_pool_type == "max"
        assert backbone.pad_input and cfg.val_dataloader.batch_size == 1
        assert cfg.val_evaluator.type == "AVAMetric"
    else:
        assert cfg.model.cls_head.in_channels == channels
        assert cfg.test_dataloader.dataset.pipeline[1].num_clips == 5
        assert any(s.type == "ThreeCrop" for s in cfg.test_dataloader.dataset.pipeline)
    _check_pipelines(cfg)
    shapes = _run_pipelines(cfg, motion_data, ava_data)
    if ava:  # 16x4 clips; 224 crops for training, full 128x128 frames at short side 256
        assert shapes == {"train_dataloader": (3, 16, 224, 224),
                          "test_dataloader": (3, 16, 256, 256)}
    else:  # 16x4 clips; 5 clips x 3 crops for testing
        assert shapes == {"train_dataloader": (1, 3, 16, 224, 224),
                          "test_dataloader": (15, 3, 16, 224, 224)}

    _reduce(cfg)
    if ava:
        from mmdet.registry import MODELS as DET_MODELS

        model = DET_MODELS.build(cfg.model)
    else:
        model = MODELS.build(cfg.model)
    model.init_weights()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert len(wrapper.optimizer.param_groups) > 1  # layer decay applied
    if ava:
        classes = cfg.model.roi_head.bbox_head.num_classes
        inputs = [torch.randint(0, 255, (3, 4, 64, 80), dtype=torch.uint8)]  # padded to 96
        data = model.data_preprocessor(
            {"inputs": inputs, "data_samples": [_ava_sample(64, 80, classes)]}, True)
        losses = model(**data, mode="loss")
        loss = losses["loss_action_cls"]
    else:
        inputs = [torch.randint(0, 255, (1, 3, 4, 64, 64), dtype=torch.uint8) for _ in range(2)]
        samples = [ActionDataSample().set_gt_label(i) for i in (3, 7)]
        data = model.data_preprocessor({"inputs": inputs, "data_samples": samples}, True)
        loss = model(**data, mode="loss")["loss_cls"]
    assert torch.isfinite(loss)
    loss.backward()
    model.eval()
    with torch.no_grad():
        # Fresh samples: the loss pass renames the proposals' boxes in place.
        samples = [_ava_sample(64, 80, classes)] if ava else samples
        data = model.data_preprocessor({"inputs": inputs, "data_samples": samples})
        preds = model(**data, mode="predict")
    if ava:
        assert preds[0].pred_instances.scores.shape == (2, classes)
    else:
        assert preds[0].pred_score.shape == (400,)


@pytest.mark.parametrize("name", [*RECOG_DEMOS.values(), *AVA_DEMOS.values()])
def test_demo_configs_build(name):
    cfg = Config.fromfile(os.path.join(CONFIGS, name))
    _check_pipelines(cfg)
    if cfg.model.type == "FastRCNN":
        from mmdet.registry import MODELS as DET_MODELS

        model = DET_MODELS.build(cfg.model)
        assert (cfg.model.roi_head.bbox_roi_extractor.featmap_stride
                == model.backbone.out_strides[-1] == 32)
        assert cfg.model.roi_head.bbox_head.in_channels == model.backbone.out_channels[-1]
    else:
        model = MODELS.build(cfg.model)
        assert cfg.model.cls_head.in_channels == model.backbone.out_channels[-1]


# ---------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def official_video_files(tmp_path_factory):
    """Official-format files ({"model_state": ...}) of the video MAE and fine-tuned Hiera-B."""
    return save_official_video_files(tmp_path_factory.mktemp("official"))


def test_video_mae_checkpoint_loads(official_video_files, tmp_path):
    paths, mae_state, _ = official_video_files
    # 1. init_cfg with the official MAE file: converted on the fly, every tensor loaded.
    model = MODELS.build(dict(
        type="Hiera", arch="hiera_base_16x224",
        init_cfg=dict(type="Pretrained", checkpoint=paths["mae"])))
    model.init_weights()
    own = model.state_dict()
    for key, value in own.items():
        torch.testing.assert_close(value, mae_state[key], msg=key)
    # 2. Converter output (--to mmaction) through mmengine's own loader (load_from): every
    #    backbone key present, no unexpected ones.
    dst = str(tmp_path / "hiera_b16_mae_k400_mmaction.pth")
    convert_checkpoint(paths["mae"], dst, to="mmaction")
    recognizer = MODELS.build(dict(
        type="Recognizer3D",
        backbone=dict(type="Hiera", arch="hiera_base_16x224"),
        cls_head=dict(type="HieraHead", num_classes=400, in_channels=768)))
    state = torch.load(dst, weights_only=True)["state_dict"]
    missing = set(recognizer.state_dict()) - set(state)
    unexpected = set(state) - set(recognizer.state_dict())
    assert not unexpected and all(k.startswith("cls_head.") for k in missing)
    from mmengine.runner import load_checkpoint

    load_checkpoint(recognizer, dst, strict=False)
    torch.testing.assert_close(recognizer.backbone.blocks[5].attn.qkv.weight,
                               mae_state["blocks.5.attn.qkv.weight"])
    # 3. An MAE file has no classifier: the head says so.
    head = MODELS.build(dict(type="HieraHead", num_classes=400, in_channels=768,
                             init_cfg=dict(type="Pretrained", checkpoint=paths["mae"])))
    with pytest.raises(CheckpointError, match="no classifier"):
        head.init_weights()


def test_finetuned_checkpoint_maps_to_head(official_video_files, tmp_path):
    paths, _, ft_state = official_video_files
    pretrained = dict(type="Pretrained", checkpoint=paths["ft"])
    head = MODELS.build(dict(type="HieraHead", num_classes=400, in_channels=768,
                             init_cfg=pretrained))
    head.init_weights()
    torch.testing.assert_close(head.fc_cls.weight, ft_state["head.projection.weight"])
    torch.testing.assert_close(head.norm.bias, ft_state["norm.bias"])
    # Converter output with --keep-head: same mapping.
    dst = str(tmp_path / "hiera_b16_k400_ft.pth")
    convert_checkpoint(paths["ft"], dst, to="mmaction", keep_head=True)
    head2 = MODELS.build(dict(type="HieraHead", num_classes=400, in_channels=768,
                              init_cfg=dict(type="Pretrained", checkpoint=dst)))
    head2.init_weights()
    torch.testing.assert_close(head2.fc_cls.bias, ft_state["head.projection.bias"])
    # Wrong class count or wrong head type: one clear error each.
    bad = MODELS.build(dict(type="HieraHead", num_classes=174, in_channels=768,
                            init_cfg=pretrained))
    with pytest.raises(CheckpointError, match="num_classes=174"):
        bad.init_weights()
    hvt_head = MODELS.build(dict(type="HVTHead", num_classes=400, in_channels=768,
                                 init_cfg=pretrained))
    with pytest.raises(CheckpointError, match="HieraHead"):
        hvt_head.init_weights()


def test_hvt_image_release_inflates_and_head_loads(tmp_path):
    official = build_backbone("hvt_s_1", num_classes=1000)  # 1D, official keys
    src = str(tmp_path / "hvt_s_1.pth")
    torch.save({"model": official.state_dict()}, src)
    pretrained = dict(type="Pretrained", checkpoint=src)
    model = MODELS.build(dict(type="HVT", arch="hvt_s_1", input_size=(4, 64, 64),
                              init_cfg=pretrained)).eval()
    model.init_weights()
    torch.testing.assert_close(model.blocks[3].mlp.fc2.weight, official.blocks[3].mlp.fc2.weight)
    # Inflated: a static clip gives the same map in every frame.
    x = torch.randn(1, 3, 1, 64, 64).expand(-1, -1, 4, -1, -1)
    with torch.no_grad():
        y = model(x)
    torch.testing.assert_close(y[:, :, 0], y[:, :, 1])
    head = MODELS.build(dict(type="HVTHead", num_classes=1000, in_channels=384,
                             init_cfg=pretrained))
    head.init_weights()
    torch.testing.assert_close(head.fc_cls.weight, official.head.weight)



def test_checkpoint_allowlist_is_targeted(tmp_path):
    """mmengine's own checkpoints need ``getattr(HistoryBuffer, 'mean')``; nothing else (read
    by mmengine's loader of local files, which the adapter makes ours: the allowlist holds for
    that read only, see test_mmengine_loading.py)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader

    good = str(tmp_path / "good.pth")
    buf = HistoryBuffer()
    buf.update(1.0)
    buf.update(2.0)
    torch.save({"buf": buf}, good)
    assert CheckpointLoader.load_checkpoint(good)["buf"].mean() == pytest.approx(1.5)
    evil = str(tmp_path / "evil.pth")
    torch.save({"x": ReachesPastHistoryBuffer()}, evil)
    with pytest.raises(CheckpointError, match="refusing getattr"):
        CheckpointLoader.load_checkpoint(evil)


# ---------------------------------------------------------------------- synthetic data
def test_video_data_is_seeded_and_readable(tmp_path):
    import decord

    a = make_motion_videos(str(tmp_path / "a"), num_train=4, num_val=4, num_frames=16, seed=3)
    b = make_motion_videos(str(tmp_path / "b"), num_train=4, num_val=4, num_frames=16, seed=3)
    for split in ("train", "val"):
        with open(a[split]["list"]) as fa, open(b[split]["list"]) as fb:
            assert fa.read() == fb.read()
    labels = [int(line.split()[1]) for line in open(a["val"]["list"])]
    assert sorted(labels) == list(range(len(MOTION_CLASSES)))  # balanced
    reader = decord.VideoReader(os.path.join(a["train"]["videos"], "000000.mp4"))
    assert len(reader) == 16 and reader[0].shape == (64, 64, 3)

    x = make_ava_shapes(str(tmp_path / "x"), 2, 1, seconds=5, seed=1)
    y = make_ava_shapes(str(tmp_path / "y"), 2, 1, seconds=5, seed=1)
    for key in ("ann_train", "ann_val", "exclude_val", "label_map"):
        assert open(x[key]).read() == open(y[key]).read()
    rows = [line.split(",") for line in open(x["ann_train"])]
    assert {int(r[6]) for r in rows} <= {i for i, _ in AVA_ACTIONS}
    assert all(0 <= float(v) <= 1 for r in rows for v in r[2:6])
    with open(x["proposals_train"], "rb") as f:
        proposals = pickle.load(f)
    assert {f"{r[0]},{r[1]}" for r in rows} == set(proposals)
    frames = sorted(os.listdir(os.path.join(x["rawframes"], rows[0][0])))
    assert frames[0] == "img_00001.jpg" and len(frames) == 5 * 8
    with pytest.raises(ValueError, match="even sides"):
        make_motion_videos(str(tmp_path / "bad"), size=(63, 64))

