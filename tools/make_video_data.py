#!/usr/bin/env python
"""Write a seeded synthetic video set in a layout MMAction2 reads (no downloads).

    python tools/make_video_data.py motion data/motion_shapes --train 64 --val 32
    python tools/make_video_data.py ava data/ava_shapes --train 64 --val 24 --size 128 128

``motion``: mp4 videos of one shape moving right/left/down/up (the class), with VideoDataset
lists. ``ava``: AVA v2.2-format rawframes, csv annotations, proposals, label map and excluded
timestamps, for actors that move horizontally, vertically, stand still and/or blink.
"""

from __future__ import annotations

import argparse
import sys

from hiera_backbones.data.video_data import (
    AVA_ACTIONS,
    MOTION_CLASSES,
    make_ava_shapes,
    make_motion_videos,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["motion", "ava"], help="which set")
    parser.add_argument("root", help="output folder")
    parser.add_argument("--train", type=int, help="training videos (motion 64, ava 64)")
    parser.add_argument("--val", type=int, help="validation videos (motion 32, ava 24)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                        help="frame size (motion 64 64, ava 128 128)")
    parser.add_argument("--frames", type=int, default=24, help="motion: frames per video")
    parser.add_argument("--seconds", type=int, default=5, help="ava: seconds per video")
    parser.add_argument("--fps", type=int, default=8, help="frames per second")
    parser.add_argument("--max-actors", type=int, default=2, help="ava: actors per video")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.kind == "motion":
            paths = make_motion_videos(
                args.root, args.train or 64, args.val or 32, tuple(args.size or (64, 64)),
                args.frames, args.fps, args.seed)
            for split in ("train", "val"):
                print(f"{split}: videos in {paths[split]['videos']}, list {paths[split]['list']}")
            print(f"classes: {', '.join(MOTION_CLASSES)}")
        else:
            paths = make_ava_shapes(
                args.root, args.train or 64, args.val or 24, tuple(args.size or (128, 128)),
                args.seconds, args.fps, args.max_actors, seed=args.seed)
            for key, value in paths.items():
                print(f"{key}: {value}")
            print("actions: " + ", ".join(f"{i} {name}" for i, name in AVA_ACTIONS))
    except (ValueError, ImportError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
