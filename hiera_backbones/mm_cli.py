"""Command-line plumbing shared by tools/mm_train.py, tools/mm_test.py and tools/mma_train.py.

The options and their meaning follow MMDetection's / MMAction2's own ``tools/train.py`` and
``tools/test.py``. mmengine is imported only inside the functions that need it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "UsageError",
    "add_runner_arguments",
    "apply_training_options",
    "build_runner",
    "load_config",
    "owned_process_group",
    "parse_runner_args",
    "print_metrics",
]


class UsageError(Exception):
    """A bad command line or config; the tools print it as one ``error:`` line, exit code 2."""


def add_runner_arguments(parser: argparse.ArgumentParser, training: bool) -> None:
    """Options every runner tool takes (plus ``--amp/--auto-scale-lr/--resume`` for training).
    Add the positional ``config`` (and anything else positional) before calling this."""
    parser.add_argument("--work-dir", help="where logs and checkpoints go "
                        "(default: ./work_dirs/<config name>)")
    if training:
        parser.add_argument("--amp", action="store_true",
                            help="mixed precision (AmpOptimWrapper)")
        parser.add_argument("--auto-scale-lr", action="store_true",
                            help="scale the lr by total batch / auto_scale_lr.base_batch_size")
        parser.add_argument("--resume", nargs="?", type=str, const="auto",
                            help="resume from CKPT, or from the latest checkpoint in the work dir")
    from mmengine.config import DictAction

    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, e.g. train_dataloader.batch_size=4")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none", help="job launcher (torchrun: pytorch)")
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)


def parse_runner_args(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> argparse.Namespace:
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def load_config(args: argparse.Namespace) -> Any:
    """``args.config`` with the launcher, ``--cfg-options`` and the work dir applied."""
    from mmengine.config import Config

    if not os.path.isfile(args.config):
        raise UsageError(f"config {args.config} does not exist")
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        name = os.path.splitext(os.path.basename(args.config))[0]
        cfg.work_dir = os.path.join("./work_dirs", name)
    return cfg


def apply_training_options(cfg: Any, args: argparse.Namespace, resume: bool = True) -> None:
    """``--amp``, ``--auto-scale-lr`` and (when ``resume``) ``--resume`` into ``cfg``."""
    if args.amp:
        wrapper = cfg.optim_wrapper.get("type", "OptimWrapper")
        if wrapper == "AmpOptimWrapper":
            print("AmpOptimWrapper is already set in the config", file=sys.stderr)
        else:
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.auto_scale_lr:
        if "base_batch_size" not in cfg.get("auto_scale_lr", {}):
            raise UsageError("--auto-scale-lr needs auto_scale_lr.base_batch_size in the config")
        cfg.auto_scale_lr.enable = True
    if not resume or args.resume is None:
        return
    cfg.resume = True
    cfg.load_from = None if args.resume == "auto" else args.resume


def build_runner(cfg: Any) -> Any:
    """The config's runner (``runner_type`` if set, else mmengine's ``Runner``)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    return Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)


def print_metrics(metrics: Any) -> None:
    """Prints the metrics once (on the main process of a distributed run)."""
    from mmengine.dist import is_main_process

    if is_main_process():
        print(metrics)


@contextmanager
def owned_process_group() -> Iterator[None]:
    """Destroys, on leaving, a default process group created inside the block (by
    ``setup_cpu_distributed`` or the runner); a group that already existed is left alone.
    A gloo group left for interpreter exit to tear down can abort the process ("terminate
    called without an active exception") after a run that otherwise succeeded."""
    import torch.distributed as dist

    existed = dist.is_available() and dist.is_initialized()
    try:
        yield
    finally:
        if not existed and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
