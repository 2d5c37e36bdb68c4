#!/usr/bin/env python
"""Write the seeded synthetic COCO shapes set (squares, circles, triangles with polygon masks).

    python tools/make_coco_shapes.py datasets/coco_shapes --train 200 --val 50 --size 128 128
"""

from __future__ import annotations

import argparse
import sys

from hiera_backbones.data import SHAPE_CLASSES, make_coco_shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="output folder")
    parser.add_argument("--train", type=int, default=200, help="training images")
    parser.add_argument("--val", type=int, default=50, help="validation images")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    parser.add_argument("--max-shapes", type=int, default=3, help="shapes per image, at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.train < 1 or args.val < 1 or min(args.size) < 32 or args.max_shapes < 1:
        parser.error("need --train/--val >= 1, --size >= 32 and --max-shapes >= 1")
    paths = make_coco_shapes(args.root, args.train, args.val, tuple(args.size), args.max_shapes,
                             args.seed)
    for split, p in paths.items():
        print(f"{split}: images in {p['images']}, annotations {p['annotations']}")
    print(f"classes: {', '.join(SHAPE_CLASSES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
