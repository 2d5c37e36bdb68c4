"""Command-line and process plumbing shared by tools/mm_train.py, tools/mm_test.py and
tools/mma_train.py (and CPU-only distributed runs: :func:`setup_cpu_distributed`).

The options and their meaning follow MMDetection's / MMAction2's own ``tools/train.py`` and
``tools/test.py``. mmengine is imported only inside the functions that need it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

__all__ = [
    "UsageError",
    "add_runner_arguments",
    "apply_training_options",
    "build_runner",
    "load_config",
    "owned_process_group",
    "parse_runner_args",
    "print_metrics",
    "run_with_runner",
    "setup_cpu_distributed",
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
    """Closes, on leaving, the process groups of a default group created inside the block (by
    ``setup_cpu_distributed`` or the runner), while the interpreter is fully alive
    (:func:`hiera_backbones.distributed.close_process_groups`: every rank waits for the others
    unless the block failed, every group is destroyed, what still points at them, the finished
    runner's DDP model and data loaders, is collected). A group that already existed is left
    alone. A gloo group left for interpreter exit to tear down can abort the process
    ("terminate called without an active exception") after a run that otherwise succeeded."""
    import torch.distributed as dist

    from ..distributed import close_process_groups

    existed = dist.is_available() and dist.is_initialized()
    finished = False
    try:
        yield
        finished = True
    finally:
        if not existed:
            close_process_groups(wait_for_peers=finished, log=_mmengine_logger())


def _mmengine_logger() -> Any:
    """The runner's logger (MMLogger's current instance): its messages land in the run's log."""
    from mmengine.logging import MMLogger

    return MMLogger.get_current_instance()


def run_with_runner(cfg: Any, launcher: str, run: Callable[[Any], int | None]) -> int:
    """Builds the config's runner inside a process group this process owns (a CPU-only
    ``torchrun`` prepared first) and returns ``run(runner)``'s exit code (None counts as 0)."""
    with owned_process_group():
        setup_cpu_distributed(cfg, launcher)
        return run(build_runner(cfg)) or 0


def setup_cpu_distributed(cfg: Any, launcher: str) -> bool:
    """Prepares a ``torchrun`` (``--launcher pytorch``) run on a machine without GPUs.

    mmengine's launcher calls ``torch.cuda.set_device`` and wraps the model in DDP with
    ``device_ids=[LOCAL_RANK]``, both GPU-only. Without CUDA this initializes the process group
    with gloo itself (mmengine then skips its own initialization) and sets
    ``cfg.model_wrapper_cfg`` for a CPU DDP model (and gloo in ``env_cfg``). With CUDA, or
    ``launcher="none"``, it does nothing. Returns True if it prepared a CPU distributed run.
    """
    if launcher == "none" or torch.cuda.is_available():
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        missing = [k for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR") if
                   k not in os.environ]
        if launcher == "pytorch" and missing:
            raise RuntimeError(
                f"--launcher pytorch needs the torchrun environment ({', '.join(missing)} "
                "missing): start with `torchrun --nproc-per-node N tools/mm_train.py ...`"
            )
        if launcher != "pytorch":
            raise RuntimeError(f"--launcher {launcher} needs GPUs; on CPU use torchrun "
                               "(--launcher pytorch)")
        dist.init_process_group(backend="gloo")
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper.setdefault("type", "MMDistributedDataParallel")
    # device_ids must be None for a CPU module (explicitly set: mmengine's default is GPU ids).
    wrapper["device_ids"] = None
    wrapper.setdefault("broadcast_buffers", False)
    wrapper.setdefault("find_unused_parameters", bool(cfg.get("find_unused_parameters", False)))
    cfg.model_wrapper_cfg = wrapper
    env = cfg.get("env_cfg") or {}
    if isinstance(env, Mapping):
        dist_cfg = dict(env.get("dist_cfg") or {})
        dist_cfg["backend"] = "gloo"
        cfg.env_cfg = {**env, "dist_cfg": dist_cfg}
    return True
