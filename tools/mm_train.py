#!/usr/bin/env python
"""Train an MMDetection config (e.g. configs/mmdet/*.py) with mmengine's Runner.

    python tools/mm_train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
                             [--resume [CKPT]] [--cfg-options KEY=VALUE ...]
    torchrun --nproc-per-node 8 tools/mm_train.py CONFIG --launcher pytorch
    torchrun --nnodes 2 --node-rank R --master-addr HOST --master-port 29500 \\
        --nproc-per-node 8 tools/mm_train.py CONFIG --launcher pytorch

Same options as MMDetection's tools/train.py. On torch >= 2.6, resuming works without
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD (see
hiera_backbones.openmmlab.loading.allow_mmengine_checkpoints), and --launcher pytorch also
runs on CPU-only machines (gloo, CPU DDP).
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from hiera_backbones.openmmlab.cli import add_runner_arguments, parse_runner_args

    parser = argparse.ArgumentParser(description="Train a detector (mmengine Runner)")
    parser.add_argument("config", help="config file")
    add_runner_arguments(parser, training=True)
    return parse_runner_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hiera_backbones.openmmlab.cli import (
        UsageError,
        apply_training_options,
        load_config,
        run_with_runner,
    )
    from hiera_backbones.openmmlab.loading import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    try:
        cfg = load_config(args)
        apply_training_options(cfg, args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def train(runner) -> None:
        runner.train()

    return run_with_runner(cfg, args.launcher, train)


if __name__ == "__main__":
    sys.exit(main())
