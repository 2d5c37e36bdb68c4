"""hiera_backbones.openmmlab.cli: the option handling the OpenMMLab tools share."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("mmengine")

from hiera_backbones.openmmlab.cli import (  # noqa: E402
    UsageError,
    add_runner_arguments,
    apply_training_options,
    load_config,
    parse_runner_args,
)


def _args(argv, training=True):
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    add_runner_arguments(parser, training=training)
    return parse_runner_args(parser, argv)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "toy_config.py"
    path.write_text(
        "optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))\n"
        "auto_scale_lr = dict(enable=False, base_batch_size=16)\n"
        "train_dataloader = dict(batch_size=2)\n"
    )
    return str(path)


def test_config_defaults_and_overrides(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(_args([config, "--cfg-options", "train_dataloader.batch_size=4"]))
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.work_dir == "./work_dirs/toy_config"
    assert cfg.launcher == "none"
    cfg = load_config(_args([config, "--work-dir", "elsewhere"], training=False))
    assert cfg.work_dir == "elsewhere"


def test_missing_config_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="config .*nope.py does not exist"):
        load_config(_args([str(tmp_path / "nope.py")]))


def test_training_options(config):
    args = _args([config, "--amp", "--auto-scale-lr", "--resume"])
    cfg = load_config(args)
    apply_training_options(cfg, args)
    assert cfg.optim_wrapper.type == "AmpOptimWrapper"
    assert cfg.optim_wrapper.loss_scale == "dynamic"
    assert cfg.auto_scale_lr.enable is True
    assert cfg.resume is True and cfg.load_from is None  # latest checkpoint in the work dir
    args = _args([config, "--resume", "run/epoch_3.pth"])
    cfg = load_config(args)
    apply_training_options(cfg, args)
    assert cfg.load_from == "run/epoch_3.pth" and cfg.resume is True
    cfg = load_config(args)
    apply_training_options(cfg, args, resume=False)  # e.g. a --test run
    assert "resume" not in cfg


def test_auto_scale_lr_needs_a_base_batch_size(tmp_path):
    path = tmp_path / "no_base.py"
    path.write_text("optim_wrapper = dict(type='OptimWrapper')\n")
    args = _args([str(path), "--auto-scale-lr"])
    with pytest.raises(UsageError, match="base_batch_size"):
        apply_training_options(load_config(args), args)


def _gloo_group():
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


def test_owned_process_group_destroys_only_what_it_created():
    import torch.distributed as dist

    from hiera_backbones.openmmlab.cli import owned_process_group

    assert not dist.is_initialized()
    with owned_process_group():
        _gloo_group()  # as setup_cpu_distributed / the runner would
        assert dist.is_initialized()
    assert not dist.is_initialized()  # no gloo group left for interpreter exit

    _gloo_group()  # a caller's own group survives the tool
    try:
        with owned_process_group():
            pass
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
