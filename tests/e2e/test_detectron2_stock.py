"""detectron2's own machinery, not ours: ``DetectionCheckpointer`` (through the
``hiera_backbones://`` iopath handler), ``default_writers`` (tensorboard) and the train / eval flow
of detectron2's ``tools/lazyconfig_train_net.py`` (re-created here: detectron2 does not ship its
tools in the package), on the demo config with a Hiera-T backbone."""

from __future__ import annotations

import glob
import os

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.engine import SimpleTrainer, default_writers, hooks  # noqa: E402
from detectron2.evaluation import inference_on_dataset  # noqa: E402
from detectron2.utils.file_io import PathManager  # noqa: E402

from hiera_backbones.checkpoints import OFFICIAL_CHECKPOINTS, CheckpointError  # noqa: E402
from hiera_backbones.detectron2 import D2Hiera, register_coco_shapes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.basename(os.path.dirname(os.path.abspath(__file__))) in ("unit", "e2e"):
    ROOT = os.path.dirname(ROOT)
DEMO = os.path.join(ROOT, "configs", "detectron2", "mask_rcnn_hiera_demo_shapes.py")
TAG = "hiera_tiny_224:mae_in1k"


@pytest.fixture()
def offline_cache(offline_cache, tmp_path, monkeypatch):
    """The shared offline download cache, plus detectron2's data sets in this test's folder."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    return offline_cache


def _mae_file_in_cache(cache) -> dict[str, torch.Tensor]:
    """The official MAE Hiera-T file, random weights, where the tag's download would put it."""
    from checkpoint_files import save_official_mae

    os.makedirs(cache, exist_ok=True)
    path = cache / os.path.basename(OFFICIAL_CHECKPOINTS[TAG])
    save_official_mae(path, "hiera_tiny_224")
    state = torch.load(path, weights_only=True)["model_state"]
    return {k: v for k, v in state.items() if k.startswith(("blocks.", "patch_embed."))}


def _config(output_dir: str, data_root: str):
    cfg = LazyConfig.load(DEMO)
    train_set, val_set = register_coco_shapes(
        os.path.join(data_root, "tiny_shapes"), prefix="stock_shapes", num_train=8, num_val=4
    )
    cfg.dataloader.train.dataset.names = train_set
    cfg.dataloader.test.dataset.names = val_set
    bottom_up = cfg.model.backbone.bottom_up
    bottom_up.embed_dim, bottom_up.stages = 96, (1, 2, 7, 2)  # Hiera-T: the MAE file's model
    cfg.train.update(init_checkpoint=f"hiera_backbones://{TAG}", output_dir=output_dir,
                     max_iter=2, eval_period=2, device="cpu")
    cfg.train.checkpointer.period = 2
    return cfg


def _do_test(cfg, model) -> dict:
    """lazyconfig_train_net.do_test."""
    return inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )


def test_lazyconfig_train_net_flow_from_the_default_init_checkpoint(offline_cache, tmp_path):
    encoder = _mae_file_in_cache(offline_cache)
    out = str(tmp_path / "output")
    cfg = _config(out, str(tmp_path / "datasets"))

    # lazyconfig_train_net.do_train, with detectron2's own checkpointer and writers.
    model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    trainer = SimpleTrainer(model, instantiate(cfg.dataloader.train), optimizer)
    checkpointer = DetectionCheckpointer(model, out, trainer=trainer)
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer),
        hooks.EvalHook(cfg.train.eval_period, lambda: _do_test(cfg, model)),
        hooks.PeriodicWriter(default_writers(out, cfg.train.max_iter), period=1),
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=False)
    bottom_up = model.backbone.bottom_up
    for k, v in encoder.items():  # the MAE encoder, converted on the fly, is in the detector
        torch.testing.assert_close(bottom_up.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert bottom_up.pos_embed.shape[1] == (128 // 4) ** 2  # resized to the detector's size
    converted = glob.glob(str(offline_cache / "detectron2" / "*.pth"))
    assert len(converted) == 1 and "hiera_tiny_224-128x128" in converted[0]
    trainer.train(0, cfg.train.max_iter)
    assert glob.glob(os.path.join(out, "events.out.tfevents.*"))  # TensorboardXWriter wrote
    assert os.path.isfile(os.path.join(out, "model_final.pth"))

    # lazyconfig_train_net --eval-only train.init_checkpoint=<output>/model_final.pth
    evaluated = instantiate(cfg.model).eval()
    DetectionCheckpointer(evaluated).load(os.path.join(out, "model_final.pth"))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(evaluated.state_dict()[k], v, rtol=0, atol=0, msg=k)
    results = _do_test(cfg, evaluated)
    # COCOEvaluator ran both tasks on the registered classes (2 iterations: AP itself is ~0).
    assert set(results) == {"bbox", "segm"}
    for task in results.values():
        assert {"AP", "AP50", "AP75", "AP-square", "AP-circle", "AP-triangle"} <= set(task)
        assert 0.0 <= task["AP50"] <= 100.0 or task["AP50"] != task["AP50"]


def test_official_file_path_and_offline_tag(offline_cache, tmp_path):
    from checkpoint_files import save_official_mae

    path = save_official_mae(tmp_path / "mae_hiera_tiny_224.pth", "hiera_tiny_224")
    model = torch.nn.Module()
    model.backbone = torch.nn.Module()
    model.backbone.bottom_up = D2Hiera("hiera_tiny_224", input_size=(64, 96))
    DetectionCheckpointer(model).load(f"hiera_backbones://{path}")  # an absolute path
    assert model.backbone.bottom_up.pos_embed.shape[1] == 16 * 24

    with pytest.raises(CheckpointError, match=r"could not download .*mae_hiera_tiny_224\.pth.*"
                                              r"offline"):
        DetectionCheckpointer(model).load(f"hiera_backbones://{TAG}")
    # Of the alive backbones with the file's architecture, the one built last.
    later = D2Hiera("hiera_tiny_224", input_size=(32, 32))
    assert "hiera_tiny_224-32x32" in PathManager.get_local_path(f"hiera_backbones://{path}")
    del model, later
    D2Hiera("hiera_small_224", input_size=(32, 32))  # dropped at once; collected on lookup
    small = D2Hiera("hiera_small_224", input_size=(64, 64))  # noqa: F841  (alive)
    with pytest.raises(CheckpointError, match="holds hiera_tiny_224 weights; the built "
                                              "backbones are hiera_small_224$"):
        PathManager.get_local_path(f"hiera_backbones://{path}")


def test_yacs_train_net_style_model_weights(offline_cache, tmp_path):
    """tools/train_net.py style: a model-zoo yacs config with the Hiera FPN backbone, built by
    detectron2's build_model, loads MODEL.WEIGHTS = hiera_backbones://<official file> through
    detectron2's own DetectionCheckpointer."""
    from checkpoint_files import save_official
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from hiera_backbones.detectron2 import add_hiera_config

    official = __import__("hiera").hiera_tiny_224(pretrained=False)
    path = save_official(tmp_path / "hiera_tiny_224.pth", official)
    cfg = add_hiera_config(get_cfg())
    cfg.merge_from_file(model_zoo.get_config_file("COCO-InstanceSegmentation/"
                                                  "mask_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.BACKBONE.NAME = "build_hiera_fpn_backbone"
    cfg.MODEL.HIERA.update(ARCH="hiera_tiny_224", INPUT_SIZE=[64, 64], FREEZE_AT=1)
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = f"hiera_backbones://{path}"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    bottom_up = model.backbone.bottom_up
    torch.testing.assert_close(bottom_up.blocks[5].mlp.fc1.weight,
                               official.blocks[5].mlp.fc1.weight, rtol=0, atol=0)
    assert bottom_up.pos_embed.shape[1] == 16 * 16 and not bottom_up.pos_embed.requires_grad
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)}])
    assert {"instances"} == set(out)
