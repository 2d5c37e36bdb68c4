#!/usr/bin/env python
"""Train or evaluate a detectron2 LazyConfig with a Hiera / HVT backbone.

detectron2's ``tools/lazyconfig_train_net.py`` flow (its engine, hooks, evaluator and ``launch``)
with this package's checkpointer (official and converted backbone files, ``weights_only`` loads,
``--resume``) and CPU support:

    # 8 GPUs; config overrides go last, as key=value
    python tools/d2_train_net.py --config-file configs/detectron2/mask_rcnn_hiera_base_100ep.py \\
        --num-gpus 8 train.output_dir=output/hiera_b
    # resume the last checkpoint in train.output_dir
    python tools/d2_train_net.py --config-file ... --num-gpus 8 --resume
    # evaluate weights
    python tools/d2_train_net.py --config-file ... --eval-only train.init_checkpoint=model.pth
    # CPU, 2 processes (gloo)
    python tools/d2_train_net.py --config-file configs/detectron2/mask_rcnn_hiera_demo_shapes.py \\
        --device cpu --num-processes 2

On CPU (``--device cpu`` or ``train.device=cpu``) mixed precision and fp16 gradient
compression are turned off (both need CUDA) and DDP runs on the gloo backend.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from typing import Any

import torch
import torch.distributed as dist
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    default_argument_parser,
    default_setup,
    hooks,
    launch,
)
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from omegaconf import DictConfig

from hiera_backbones.detectron2 import HieraCheckpointer
from hiera_backbones.distributed import close_process_groups

logger = logging.getLogger("detectron2")


def load_config(args: argparse.Namespace) -> DictConfig:
    """The config file with the command-line overrides (and ``--device``) applied."""
    cfg = LazyConfig.load(args.config_file)
    opts = list(args.opts or [])
    if args.device:
        opts.append(f"train.device={args.device}")
    return LazyConfig.apply_overrides(cfg, opts)


def config_device(cfg: DictConfig) -> str:
    device = str(cfg.train.get("device", "cuda"))
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise SystemExit(f"error: train.device={device!r}; use 'cuda' or 'cpu'")
    return device


def adapt_to_device(cfg: DictConfig) -> None:
    """CPU runs: AMP and fp16 gradient compression need CUDA."""
    if config_device(cfg) != "cpu":
        return
    if cfg.train.get("amp", {}).get("enabled", False):
        logger.info("train.device=cpu: mixed precision (train.amp.enabled) turned off")
        cfg.train.amp.enabled = False
    if cfg.train.get("ddp", {}).get("fp16_compression", False):
        logger.info("train.device=cpu: fp16 gradient compression turned off")
        cfg.train.ddp.fp16_compression = False


def do_test(cfg: DictConfig, model: torch.nn.Module) -> dict[str, Any]:
    if cfg.dataloader.get("evaluator") is None:  # absent, or dataloader.evaluator=null
        return {}
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    print_csv_format(results)
    return results


def _writers(cfg: DictConfig) -> list:
    writers = [CommonMetricPrinter(cfg.train.max_iter),
               JSONWriter(os.path.join(cfg.train.output_dir, "metrics.json"))]
    if importlib.util.find_spec("tensorboard") is not None:  # optional
        writers.append(TensorboardXWriter(cfg.train.output_dir))
    else:
        logger.info("tensorboard is not installed: no TensorBoard events are written")
    return writers


def _ddp(cfg: DictConfig, model: torch.nn.Module) -> torch.nn.Module:
    kwargs = dict(cfg.train.get("ddp", {}))
    if config_device(cfg) == "cpu":
        kwargs["device_ids"] = None  # DDP over CPU modules takes no device ids
    return create_ddp_model(model, **kwargs)


def do_train(args: argparse.Namespace, cfg: DictConfig) -> dict[str, Any]:
    """Trains with detectron2's trainer and hooks; returns the last evaluation results."""
    model = instantiate(cfg.model)
    logger.info(f"Model:\n{model}")
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = _ddp(cfg, model)
    trainer_cls = AMPTrainer if cfg.train.amp.enabled else SimpleTrainer
    trainer = trainer_cls(model, train_loader, optimizer)
    checkpointer = HieraCheckpointer(model, cfg.train.output_dir, trainer=trainer)

    last_results: dict[str, Any] = {}

    def evaluate() -> dict[str, Any]:
        last_results.clear()
        last_results.update(do_test(cfg, model))
        return last_results

    main_process = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
        if main_process else None,
        hooks.EvalHook(cfg.train.eval_period, evaluate),
        hooks.PeriodicWriter(_writers(cfg), period=cfg.train.log_period)
        if main_process else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return last_results


def main(args: argparse.Namespace) -> dict[str, Any]:
    """One process: set up, then evaluate (``--eval-only``) or train. Returns the (last)
    evaluation results on the main process. A process started by ``launch`` leaves its
    process groups closed (:func:`close_distributed`)."""
    finished = False
    try:
        results = _run(args)
        finished = True
        return results
    finally:
        close_distributed(wait_for_peers=finished)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(args)
    default_setup(cfg, args)
    adapt_to_device(cfg)
    world = comm.get_world_size()
    if config_device(cfg) == "cpu" and world > 1:
        # Processes share the machine's cores; oversubscribed threads slow everyone down.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // comm.get_local_size()))

    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = _ddp(cfg, model)
        HieraCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    return do_train(args, cfg)


def close_distributed(wait_for_peers: bool = True) -> None:
    """Closes this process's process groups while the interpreter is fully alive
    (:func:`hiera_backbones.distributed.close_process_groups`): detectron2's ``launch`` leaves
    its workers' groups (the world, its local group, the gloo group ``comm.gather`` caches)
    open when the worker returns. detectron2's references to them are dropped too, so nothing
    keeps the destroyed groups alive and a later launch in this process works. No-op outside a
    distributed run."""

    def forget_detectron2_groups() -> None:
        comm._LOCAL_PROCESS_GROUP = None
        for cached in (comm.create_local_process_group, comm._get_global_gloo_group):
            cached.cache_clear()

    # comm.synchronize: detectron2's barrier (a no-op for one process).
    if wait_for_peers and dist.is_available() and dist.is_initialized():
        comm.synchronize()
    close_process_groups(wait_for_peers=False, forget=forget_detectron2_groups, log=logger)


def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser(epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument(
        "--num-processes", dest="num_gpus", type=int, default=argparse.SUPPRESS, metavar="N",
        help="processes per machine (same as --num-gpus; clearer on CPU)",
    )
    parser.add_argument(
        "--device", choices=("cuda", "cpu"), default=None,
        help="shortcut for the override train.device=...",
    )
    return parser


def cli(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.config_file or not os.path.isfile(args.config_file):
        parser.error(f"--config-file {args.config_file!r}: no such file")
    if args.num_gpus < 1 or args.num_machines < 1:
        parser.error("--num-gpus/--num-processes and --num-machines must be >= 1")
    device = config_device(load_config(args))
    if device == "cpu":
        # detectron2's launch picks NCCL and pins one GPU per process whenever CUDA is visible;
        # with no GPU visible it uses gloo, the CPU backend, in every process.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif not torch.cuda.is_available():
        raise SystemExit(
            "error: train.device is cuda but CUDA is not available; pass --device cpu"
        )
    elif args.num_gpus > torch.cuda.device_count():
        raise SystemExit(
            f"error: --num-gpus {args.num_gpus} but only {torch.cuda.device_count()} GPUs"
        )
    print(f"Command line arguments: {args}")
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli())
