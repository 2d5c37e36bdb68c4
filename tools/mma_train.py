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
mmengine's own checkpoints hold are allowed, for that read only), and --launcher pytorch also
runs on CPU-only machines (gloo, CPU DDP).
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from hiera_backbones.openmmlab.cli import add_runner_arguments, parse_runner_args

    parser = argparse.ArgumentParser(description="Train / test an MMAction2 model (mmengine)")
    parser.add_argument("config", help="config file")
    parser.add_argument("--test", metavar="CKPT", help="only evaluate CKPT with the test loop")
    parser.add_argument("--out", help="with --test: also dump the raw predictions (.pkl)")
    add_runner_arguments(parser, training=True)
    return parse_runner_args(parser, argv)


def _is_mmengine_checkpoint(spec: str) -> bool:
    """True for a whole-model file mmengine saved (``state_dict`` of a recognizer/detector);
    False for backbone weights (official files, ``model:tag`` names, converter output)."""
    from hiera_backbones.checkpoints import identify, read_checkpoint
    from hiera_backbones.openmmlab.loading import allow_mmengine_checkpoints

    if not os.path.exists(spec):
        return False  # "<model>:<tag>", resolved by init_cfg
    allow_mmengine_checkpoints()  # a trained recognizer's file holds mmengine's classes
    raw = read_checkpoint(spec)
    return identify(raw).framework == "mmengine"


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
    import hiera_backbones.mmaction  # noqa: F401  (DRN wheel fix, registrations, safe resume)
    from hiera_backbones.checkpoints import CheckpointError
    from hiera_backbones.openmmlab import cli
    from hiera_backbones.openmmlab.cli import UsageError

    from_weights = False
    try:
        if args.out is not None and (
            args.test is None or not args.out.endswith((".pkl", ".pickle"))
        ):
            raise UsageError("--out needs --test and a .pkl or .pickle file")
        cfg = cli.load_config(args)
        if cfg.model.get("type") == "FastRCNN":
            hiera_backbones.mmaction.require_ava()
        if args.test is not None:
            if _is_mmengine_checkpoint(args.test):
                cfg.load_from = args.test
            else:
                _use_weights_file(cfg, args.test)
                from_weights = True
            cfg.resume = False
        cli.apply_training_options(cfg, args, resume=args.test is None)
    except (UsageError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return cli.run_with_runner(cfg, args.launcher, lambda runner: _run(runner, args, from_weights))


def _run(runner, args: argparse.Namespace, from_weights: bool) -> int:
    """Train, or test (``--test``) with the built runner; the process exit code."""
    from hiera_backbones.checkpoints import CheckpointError
    from hiera_backbones.openmmlab.cli import print_metrics

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
    print_metrics(runner.test())
    return 0


if __name__ == "__main__":
    sys.exit(main())
