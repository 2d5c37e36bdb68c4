#!/usr/bin/env python
"""Compares hiera_backbones' Hiera with the official implementation, stage by stage.

Builds the official model (``hiera-transformer``) at the requested size with random weights or a
checkpoint, copies its weights into ours (strictly), runs both on the same random input in fp32,
and prints the max |difference| per stage map.

    python tools/check_parity.py hiera_base_224 --size 512 768
    python tools/check_parity.py hiera_base_16x224 --size 16 224 224 --batch 1
    python tools/check_parity.py hiera_base_224 --checkpoint hiera_base_224.pth
"""

from __future__ import annotations

import argparse
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="official model name, e.g. hiera_base_224")
    parser.add_argument("--size", type=int, nargs="+", help="H W (image) or T H W (video)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--checkpoint", help="official .pth ({'model_state': ...}) to load")
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        import hiera
    except ImportError:
        parser.error("the official package is needed: pip install hiera-transformer==0.1.4")
    from hiera_backbones import build_backbone
    from hiera_backbones.models.hiera import HIERA_CONFIGS

    if args.model not in HIERA_CONFIGS:
        parser.error(f"unknown model {args.model!r}; choose from {', '.join(HIERA_CONFIGS)}")
    size = tuple(args.size) if args.size else HIERA_CONFIGS[args.model]["input_size"]
    torch.manual_seed(args.seed)
    try:
        ours = build_backbone(args.model, input_size=size).eval()
    except ValueError as err:
        parser.error(str(err))
    official = getattr(hiera, args.model)(pretrained=False, input_size=size).eval()
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        state = state.get("model_state", state)
        missing, _ = official.load_state_dict(state, strict=False)
        if any(not k.startswith(("norm.", "head.")) for k in missing):
            parser.error(f"{args.checkpoint} lacks backbone weights: {missing[:5]} ...")
    ours.load_state_dict(
        {k: v for k, v in official.state_dict().items() if not k.startswith(("norm.", "head."))},
        strict=True,
    )
    x = torch.randn(args.batch, 3, *size)
    with torch.no_grad():
        _, ref = official(x, return_intermediates=True)
        got = ours(x)
    worst = 0.0
    for stage, (a, b) in enumerate(zip(got, ref)):
        diff = (a - b.movedim(-1, 1)).abs().max().item()
        worst = max(worst, diff)
        print(f"stage {stage}: shape {tuple(a.shape)}  max|diff| {diff:.3e}")
    ok = worst <= args.tol
    print(f"{'OK' if ok else 'FAIL'}: max|diff| {worst:.3e} (tolerance {args.tol:.0e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
