#!/usr/bin/env python
"""Evaluate a checkpoint with an MMDetection config (e.g. configs/mmdet/*.py) through mmengine's
Runner and the config's test evaluator (CocoMetric for the shipped configs).

    python tools/mm_test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                            [--cfg-options KEY=VALUE ...]
    torchrun --nproc-per-node 8 tools/mm_test.py CONFIG CHECKPOINT --launcher pytorch

CHECKPOINT is a file mmengine saved (safe to load on torch >= 2.6: only the classes mmengine's
checkpoints hold are allowlisted) or any file `load_from` reads.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description="Test a detector (mmengine Runner)")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--work-dir", help="where the evaluation log goes "
                        "(default: ./work_dirs/<config name>)")
    parser.add_argument("--out", help="also dump the raw predictions to this .pkl file")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, e.g. test_dataloader.batch_size=4")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none", help="job launcher (torchrun: pytorch)")
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
    for path, what in ((args.config, "config"), (args.checkpoint, "checkpoint")):
        if not os.path.isfile(path):
            print(f"error: {what} {path} does not exist", file=sys.stderr)
            return 2
    if args.out is not None and not args.out.endswith((".pkl", ".pickle")):
        print("error: --out must be a .pkl or .pickle file", file=sys.stderr)
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
    cfg.load_from = args.checkpoint
    cfg.resume = False
    setup_cpu_distributed(cfg, args.launcher)

    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    if args.out is not None:
        if cfg.get("default_scope") == "mmdet":
            from mmdet.evaluation import DumpDetResults as Dump
        else:
            from mmengine.evaluator import DumpResults as Dump
        runner.test_evaluator.metrics.append(Dump(out_file_path=args.out))
    metrics = runner.test()
    from mmengine.dist import is_main_process

    if is_main_process():
        print(metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
