"""``hiera-convert`` / ``python tools/convert.py``: convert checkpoints for a framework."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from .convert import TARGETS, convert_checkpoint
from .hub import OFFICIAL_CHECKPOINTS
from .identify import FORMAT_ALIASES, SOURCE_FORMATS
from .io import CheckpointError

EPILOG = """\
examples:
  hiera-convert mae_hiera_base_224.pth hiera_b_mae_d2.pth --to detectron2
  hiera-convert hiera_base_224:mae_in1k hiera_b_mae_mmdet.pth --to mmdet --input-size 1024 1024
  hiera-convert hiera_base_16x224.pth hiera_b16_k400.pth --to mmaction --keep-head --verify
  hiera-convert facebook-hiera-hub-folder/ hiera_b.safetensors --to backbone
  hiera-convert mae_hiera_base_224.pth hiera_b_mae_abswin.pth --to mmdet --abs-win --verify
  hiera-convert sam2.1-hiera-tiny-hf-folder/ sam2.1_t_d2.pth --to detectron2
  hiera-convert hvt_s_2.pth hvt_s_2_d2.pth --to detectron2 --input-size 1024 1024 --patch-size 4
  hiera-convert deit_small_patch16_224.pth hvt_s_4_vit.pth --to backbone --arch hvt_s_4 \\
      --num-heads 6

SRC may be a .pth/.pt/.bin/.safetensors file, a Hugging Face hub folder (config.json +
model.safetensors) or an official name with a tag (downloaded when online), one of:
  {names}
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hiera-convert",
        description="Convert Hiera (official, MAE, Hugging Face, timm) and HVT (official, "
        "ViT/DeiT/MAE-initialised) checkpoints into files "
        "our backbones and detectron2 / MMDetection / MMAction2 load with no missing keys.",
        epilog=EPILOG.format(names="\n  ".join(sorted(OFFICIAL_CHECKPOINTS))),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", help="checkpoint file, hub folder, or <model>:<tag>")
    parser.add_argument("dst", help="output file (.pth, or .safetensors for --to backbone)")
    parser.add_argument("--to", required=True, choices=TARGETS, help="target framework layout")
    parser.add_argument("--from", dest="from_format", choices=(*SOURCE_FORMATS, *FORMAT_ALIASES),
                        help="force the source format instead of detecting it from the keys")
    parser.add_argument("--keep-head", action="store_true",
                        help="keep the classifier (norm.*, head.projection.*)")
    parser.add_argument("--input-size", type=int, nargs="+", metavar="N",
                        help="resize the position embedding for this input: H W or T H W")
    parser.add_argument("--prefix", help="key prefix instead of the target's default")
    parser.add_argument("--force", action="store_true", help="overwrite DST")
    parser.add_argument("--verify", action="store_true",
                        help="compare stage features with the official model (needs "
                        "hiera-transformer)")
    hvt = parser.add_argument_group("HVT")
    hvt.add_argument("--hvt-mode", choices=("1d", "2d", "video"),
                     help="HVT layout to write (default: 2d for detectron2/mmdet, video for "
                     "mmaction, unchanged for backbone)")
    hvt.add_argument("--patch-size", type=int, help="HVT 2d/video patch size (kernel resampled)")
    hvt.add_argument("--arch", help="target HVT variant for a plain ViT source, e.g. hvt_s_2")
    hvt.add_argument("--num-heads", type=int,
                     help="the ViT's head count (required for ViT sources: not in the shapes)")
    parser.add_argument("--abs-win", action="store_true",
                        help="plain image Hiera (e.g. MAE) -> abs-win position embedding: window "
                        "part = mean over mask units, background = the rest (exact at the "
                        "pretraining size; build the model with arch=dict(base=<name>, "
                        "abs_win=True, global_pos_size=<token grid>))")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="load legacy pickles with weights_only=False (trusted files only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.to != "backbone" and args.dst.endswith(".safetensors"):
        print("error: .safetensors output is for --to backbone; frameworks read .pth",
              file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # timm's layer-import notices
            meta = convert_checkpoint(
                args.src, args.dst, to=args.to, from_format=args.from_format,
                keep_head=args.keep_head, force=args.force, allow_pickle=args.allow_pickle,
                input_size=args.input_size, prefix=args.prefix, verify=args.verify,
                hvt_mode=args.hvt_mode, patch_size=args.patch_size, arch=args.arch,
                num_heads=args.num_heads, abs_win=args.abs_win,
            )
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    dropped = meta["dropped"]
    print(f"wrote {args.dst}: {meta['arch']} ({meta['source_format']}) for {args.to}, "
          f"prefix {meta['prefix']!r}, input size {tuple(meta['build_kwargs']['input_size'])}")
    if dropped:
        shown = ", ".join(dropped[:6]) + (", ..." if len(dropped) > 6 else "")
        print(f"dropped {len(dropped)} pretraining-only tensors: {shown}")
    if "verify_max_rel_error" in meta:
        print(f"verified against the source model: max |diff| {meta['verify_max_abs_diff']:.2e}, "
              f"{meta['verify_max_rel_error']:.2e} of the map scale")
    return 0


if __name__ == "__main__":
    sys.exit(main())
