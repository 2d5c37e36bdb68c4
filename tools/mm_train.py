#!/usr/bin/env python
"""Train an MMDetection config (e.g. configs/mmdet/*.py) with mmengine's Runner.

    python tools/mm_train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
                             [--resume [CKPT]] [--cfg-options KEY=VALUE ...]
    torchrun --nproc-per-node 8 tools/mm_train.py CONFIG --launcher pytorch
    torchrun --nnodes 2 --node-rank R --master-addr HOST --master-port 29500 \\
        --nproc-per-node 8 tools/mm_train.py CONFIG --launcher pytorch

Same options as MMDetection's tools/train.py. On torch >= 2.6, resuming works without
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD (see hiera_backbones.mm_common.allow_mmengine_checkpoints), and
--launcher pytorch also runs on CPU-only machines (gloo, CPU DDP).
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description="Train a detector (mmengine Runner)")
    parser.add_argument("config", help="config file")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from hiera_backbones.mm_common import allow_mmengine_checkpoints, setup_cpu_distributed

    allow_mmengine_checkpoints()
    if not os.path.isfile(args.config):
        print(f"error: config {args.config} does not exist", file=sys.stderr)
        return 2
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        name = os.path.splitext(os.path.basename(args.config))[0]
        cfg.work_dir = os.path.join("./work_dirs", name)
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
    if args.resume == "auto":
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    setup_cpu_distributed(cfg, args.launcher)

    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    runner.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
