#!/usr/bin/env python
"""Train or evaluate an MMAction2 config (e.g. configs/mmaction/*.py) with mmengine's Runner.

    python tools/mma_train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
                              [--resume [CKPT]] [--cfg-options KEY=VALUE ...]
    python tools/mma_train.py CONFIG --test CKPT [--out results.pkl]
    torchrun --nproc-per-node 8 tools/mma_train.py CONFIG --launcher pytorch

Training uses the config's train/val loops (Kinetics: AccMetric; AVA: AVAMetric). ``--test``
runs the test loop only. ``CKPT`` is a checkpoint mmengine saved (a trained recognizer or
detector), or, for recognition, a fine-tuned Hiera / HVT file: an official one
(``hiera_base_16x224.pth``, or ``hiera_base_16x224:mae_k400_ft_k400`` to download it), or
``hiera-convert ... --to mmaction --keep-head`` output; those load through the backbone's and the
head's ``init_cfg`` (converted on the fly).

Importing ``hiera_backbones.mmaction`` first works around the mmaction2 1.2.0 wheel bug; on
torch >= 2.6, resuming works without TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD (only the classes
mmengine's own checkpoints hold are allowlisted), and --launcher pytorch also runs on CPU-only
machines (gloo, CPU DDP).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description="Train / test an MMAction2 model (mmengine)")
    parser.add_argument("config", help="config file")
    parser.add_argument("--test", metavar="CKPT", help="only evaluate CKPT with the test loop")
    parser.add_argument("--out", help="with --test: also dump the raw predictions (.pkl)")
    parser.add_argument("--work-dir", help="where logs and checkpoints go "
                        "(default: ./work_dirs/<config name>)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (AmpOptimWrapper)")
    parser.add_argument("--auto-scale-lr", action="store_true",
                        help="scale the lr by total batch / auto_scale_lr.base_batch_size")
    parser.add_argument("--resume", nargs="?", type=str, const="auto",
                        help="resume from CKPT, or from the latest checkpoint in the work dir")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, e.g. train_dataloader.batch_size=4")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none", help="job launcher (torchrun: pytorch)")
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def _is_mmengine_checkpoint(spec: str) -> bool:
    """True for a whole-model file mmengine saved (``state_dict`` of a recognizer/detector);
    False for backbone weights (official files, ``model:tag`` names, converter output)."""
    from hiera_backbones.checkpoints import read_checkpoint

    if not os.path.exists(spec):
        return False  # "<model>:<tag>", resolved by init_cfg
    content = read_checkpoint(spec).content
    meta = content.get("meta")
    if isinstance(meta, Mapping) and meta.get("format") == "hiera_backbones":
        return False
    return isinstance(content.get("state_dict"), Mapping)


def _use_weights_file(cfg, spec: str) -> None:
    """Evaluate a fine-tuned backbone+classifier file: both go through init_cfg."""
    model = cfg.model
    head = model.get("cls_head") or {}
    if model.get("type") == "FastRCNN" or head.get("type") not in ("HieraHead", "HVTHead"):
        raise SystemExit(
            f"error: {spec} holds backbone weights; testing this model needs a checkpoint "
            "mmengine saved after training it (the detection head is not in the file)"
        )
    pretrained = dict(type="Pretrained", checkpoint=spec)
    model.backbone.init_cfg = pretrained
    model.cls_head.init_cfg = pretrained
    cfg.load_from = None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import hiera_backbones.mmaction  # noqa: F401  (DRN wheel fix, registrations, safe resume)
    from hiera_backbones.checkpoints import CheckpointError
    from hiera_backbones.mm_common import setup_cpu_distributed

    if not os.path.isfile(args.config):
        print(f"error: config {args.config} does not exist", file=sys.stderr)
        return 2
    if args.out is not None and (args.test is None or not args.out.endswith((".pkl", ".pickle"))):
        print("error: --out needs --test and a .pkl or .pickle file", file=sys.stderr)
        return 2
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.model.get("type") == "FastRCNN":
        hiera_backbones.mmaction.require_ava()
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        name = os.path.splitext(os.path.basename(args.config))[0]
        cfg.work_dir = os.path.join("./work_dirs", name)
    from_weights = False
    if args.test is not None:
        try:
            mmengine_file = _is_mmengine_checkpoint(args.test)
        except CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if mmengine_file:
            cfg.load_from = args.test
        else:
            _use_weights_file(cfg, args.test)
            from_weights = True
        cfg.resume = False
    if args.amp:
        wrapper = cfg.optim_wrapper.get("type", "OptimWrapper")
        if wrapper == "AmpOptimWrapper":
            print("AmpOptimWrapper is already set in the config", file=sys.stderr)
        else:
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.auto_scale_lr:
        if "base_batch_size" not in cfg.get("auto_scale_lr", {}):
            print("error: --auto-scale-lr needs auto_scale_lr.base_batch_size in the config",
                  file=sys.stderr)
            return 2
        cfg.auto_scale_lr.enable = True
    if args.test is None:
        if args.resume == "auto":
            cfg.resume = True
            cfg.load_from = None
        elif args.resume is not None:
            cfg.resume = True
            cfg.load_from = args.resume
    setup_cpu_distributed(cfg, args.launcher)

    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    if args.test is None:
        runner.train()
        return 0
    if from_weights:
        try:
            model = getattr(runner.model, "module", runner.model)  # unwrap DDP
            model.init_weights()  # the test loop never initializes weights itself
        except CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if args.out is not None:
        from mmengine.evaluator import DumpResults

        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    from mmengine.dist import is_main_process

    if is_main_process():
        print(metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
