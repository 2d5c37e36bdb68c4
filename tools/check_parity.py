#!/usr/bin/env python
"""Compares hiera_backbones' Hiera with the official implementation, stage by stage.

Builds the official model (``hiera-transformer``) at the requested size with random weights or a
checkpoint, copies its weights into ours (strictly), runs both on the same random input in fp32,
and prints each stage map's error relative to its scale, ``max|diff| / max|map|``. Image and
video models, at any valid size (H and W multiples of 32; video: an even number of frames).

    python tools/check_parity.py hiera_base_224 --size 512 768
    python tools/check_parity.py hiera_base_16x224 --size 16 224 224 --batch 1
    python tools/check_parity.py hiera_base_224 --checkpoint hiera_base_224.pth

``--checkpoint`` takes an official file (``{'model_state': ...}``, fine-tuned or MAE) or any
file ``hiera-convert`` reads; its position embedding is resized to ``--size`` by the rule our
model uses.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import torch

#: What is printed per stage: ``max|ours - official| / max|official|``, the project's one fp32
#: rule (:func:`hiera_backbones.parity.map_errors`).
METRIC = "relative error"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="check_parity.py", description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="official model name, e.g. hiera_base_224")
    parser.add_argument("--size", type=int, nargs="+", help="H W (image) or T H W (video)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--checkpoint",
                        help="official .pth ({'model_state': ...}) or any file hiera-convert reads")
    parser.add_argument("--tol", type=float, default=None,
                        help="largest accepted max|diff| / max|map| per stage (default: "
                             "hiera_backbones.parity.FP32_RTOL, 2e-5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # timm's layer-import notice
            import hiera  # noqa: F401
    except ImportError:
        parser.error("the official package is needed: pip install hiera-transformer==0.1.4")
    from hiera_backbones import build_backbone
    from hiera_backbones.checkpoints import CheckpointError, read_backbone_weights
    from hiera_backbones.checkpoints.verify import load_into_reference, random_input, stage_errors
    from hiera_backbones.models import HIERA_CONFIGS
    from hiera_backbones.parity import FP32_RTOL, official_hiera, official_stage_maps

    if args.model not in HIERA_CONFIGS:
        parser.error(f"unknown model {args.model!r}; choose from {', '.join(HIERA_CONFIGS)}")
    size = tuple(args.size) if args.size else tuple(HIERA_CONFIGS[args.model]["input_size"])
    try:  # a size that does not fit fails before anything is built or read
        with torch.device("meta"):
            build_backbone(args.model, input_size=size)
    except ValueError as err:
        parser.error(str(err))
    read = None
    if args.checkpoint:
        try:
            read = read_backbone_weights(args.checkpoint, input_size=size)
        except CheckpointError as err:
            parser.error(f"--checkpoint: {err}")
        if read.arch != args.model:
            parser.error(f"--checkpoint: {args.checkpoint} holds {read.arch} weights, "
                         f"not {args.model}")
    torch.manual_seed(args.seed)
    ours = build_backbone(args.model, input_size=size).eval()
    official = official_hiera(args.model, input_size=size)  # video too, any size
    weights = "random"
    if read is not None:
        try:
            load_into_reference(official, read.backbone, f"the official {args.model}")
        except CheckpointError as err:
            parser.error(f"--checkpoint: {args.checkpoint} does not fit: {err}")
        weights = f"{args.checkpoint} ({read.source_format})"
    ours.load_state_dict(
        {k: v for k, v in official.state_dict().items() if not k.startswith(("norm.", "head."))},
        strict=True,
    )
    print(f"{args.model} at {'x'.join(map(str, size))}, batch {args.batch}, weights: {weights}")
    x = random_input(args.batch, size, args.seed)
    errors = stage_errors(ours, lambda t: official_stage_maps(official, t), x)
    for stage, err in enumerate(errors):
        print(f"stage {stage}: shape {err.shape}  {METRIC} {err.rel:.3e}")
    worst = max(err.rel for err in errors)
    tol = FP32_RTOL if args.tol is None else args.tol
    ok = worst <= tol
    print(f"{'OK' if ok else 'FAIL'}: {METRIC} {worst:.3e} (tolerance {tol:.0e} of the map's "
          "scale)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
