#!/usr/bin/env python
"""Evaluate a checkpoint with an MMDetection config (e.g. configs/mmdet/*.py) through mmengine's
Runner and the config's test evaluator (CocoMetric for the shipped configs).

    python tools/mm_test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                            [--cfg-options KEY=VALUE ...]
    torchrun --nproc-per-node 8 tools/mm_test.py CONFIG CHECKPOINT --launcher pytorch

CHECKPOINT is a file mmengine saved (safe to load on torch >= 2.6: only the classes mmengine's
checkpoints hold are allowed, for that read only) or any file `load_from` reads.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from hiera_backbones.openmmlab.cli import add_runner_arguments, parse_runner_args

    parser = argparse.ArgumentParser(description="Test a detector (mmengine Runner)")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--out", help="also dump the raw predictions to this .pkl file")
    add_runner_arguments(parser, training=False)
    return parse_runner_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hiera_backbones.openmmlab.cli import (
        UsageError,
        load_config,
        print_metrics,
        run_with_runner,
    )
    from hiera_backbones.openmmlab.loading import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    try:
        if not os.path.isfile(args.checkpoint):
            raise UsageError(f"checkpoint {args.checkpoint} does not exist")
        if args.out is not None and not args.out.endswith((".pkl", ".pickle")):
            raise UsageError("--out must be a .pkl or .pickle file")
        cfg = load_config(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg.load_from = args.checkpoint
    cfg.resume = False

    def test(runner) -> None:
        if args.out is not None:
            if cfg.get("default_scope") == "mmdet":
                from mmdet.evaluation import DumpDetResults as Dump
            else:
                from mmengine.evaluator import DumpResults as Dump
            runner.test_evaluator.metrics.append(Dump(out_file_path=args.out))
        print_metrics(runner.test())

    return run_with_runner(cfg, args.launcher, test)


if __name__ == "__main__":
    sys.exit(main())
