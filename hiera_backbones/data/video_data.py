"""Seeded synthetic video data in the layouts MMAction2 reads, for tests, demos and smoke runs.

Two sets, both made of moving shapes (squares, circles, triangles) on a noisy background, where
what a shape *does over time* is the label, so a single frame cannot solve the task:

* :func:`make_motion_videos`: recognition (``VideoDataset``). One shape per clip moving right,
  left, down or up (:data:`MOTION_CLASSES`); its start position, speed, size, colour and kind are
  random. mp4 files (MPEG-4 Part 2, ``mp4v``, written with OpenCV) plus Kinetics-style lists::

      root/videos_train/000000.mp4 ...    root/train_list_videos.txt   ("000000.mp4 <label>")
      root/videos_val/000000.mp4 ...      root/val_list_videos.txt
      root/classes.txt

* :func:`make_ava_shapes`: spatio-temporal action detection in the AVA v2.2 layout
  (``AVADataset`` / ``AVAMetric``). Each video has one to ``max_actors`` "actors" (shapes) that
  move horizontally, move vertically or stand still, and may also blink (colour flicker), so an
  actor can have two labels at once (:data:`AVA_ACTIONS`). Same file names as the real set::

      root/rawframes/<video_id>/img_00001.jpg ...
      root/annotations/ava_{train,val}_v2.2.csv
      root/annotations/ava_{train,val}_excluded_timestamps_v2.2.csv
      root/annotations/ava_dense_proposals_{train,val}.FAIR.recall_93.9.pkl
      root/annotations/ava_action_list_v2.2_for_activitynet_2019.pbtxt

  Keyframes are annotated every second from ``timestamp_start + 2`` to ``timestamp_end - 2``
  (AVA: 902 to 1798), with boxes at the frame MMAction2's ``SampleAVAFrames`` centres its clip
  on. Proposals are the ground-truth boxes slightly jittered (score >= 0.9) plus a low-score
  false positive, like the FAIR person detections. One keyframe per split is listed as excluded.

Same seed, same labels, boxes and frames (JPEG/PNG bytes are reproducible; mp4 bytes depend on
the encoder build). Uses numpy and OpenCV only; no MMAction2 import.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Sequence

import numpy as np

__all__ = [
    "AVA_ACTIONS",
    "MOTION_CLASSES",
    "make_ava_shapes",
    "make_motion_videos",
]

#: Recognition classes of :func:`make_motion_videos`, by label index.
MOTION_CLASSES = ("right", "left", "down", "up")
#: AVA-style ``(action_id, name)`` of :func:`make_ava_shapes`; ids start at 1 as in AVA.
AVA_ACTIONS = ((1, "move horizontally"), (2, "move vertically"), (3, "stand still"), (4, "blink"))
_KINDS = ("square", "circle", "triangle")
_DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ImportError(
            "the synthetic video sets need OpenCV (installed with mmaction2): pip install "
            "opencv-python"
        ) from None
    return cv2


def _background(rng: np.random.Generator, size: Sequence[int]) -> np.ndarray:
    """A dark base colour with a fixed speckle texture (so colour thresholding is not enough)."""
    h, w = size
    base = rng.integers(0, 70, size=3)
    noise = rng.integers(0, 50, size=(h, w, 1)) * (rng.random((h, w, 1)) < 0.3)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _draw(cv2, frame: np.ndarray, kind: str, cx: float, cy: float, r: float, angle: float,
          colour: Sequence[int]) -> None:
    colour = tuple(int(c) for c in colour)
    if kind == "circle":
        cv2.circle(frame, (round(cx), round(cy)), round(r), colour, -1, lineType=cv2.LINE_AA)
        return
    n = 4 if kind == "square" else 3
    pts = [(cx + r * math.cos(angle + 2 * math.pi * i / n),
            cy + r * math.sin(angle + 2 * math.pi * i / n)) for i in range(n)]
    cv2.fillPoly(frame, [np.round(np.array(pts)).astype(np.int32)], colour, lineType=cv2.LINE_AA)


def _check_size(size: Sequence[int], minimum: int) -> tuple[int, int]:
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < minimum or any(s % 2 for s in size):
        raise ValueError(f"size must be (H, W), even sides >= {minimum}; got {size}")
    return size


# ---------------------------------------------------------------------- recognition
def _motion_clip(rng: np.random.Generator, label: int, size: tuple[int, int],
                 num_frames: int) -> list[np.ndarray]:
    cv2 = _cv2()
    h, w = size
    dx, dy = _DIRECTIONS[MOTION_CLASSES[label]]
    r = rng.uniform(0.09, 0.14) * min(h, w)
    # Travel at most ~70% of the free space over the whole video, so the shape stays in view.
    free = (w if dx else h) - 2 * r - 2
    speed = rng.uniform(0.45, 0.7) * free / max(num_frames - 1, 1)
    travel = speed * (num_frames - 1)
    # Start anywhere the whole path fits; the cross axis is uniform.
    along = rng.uniform(r + 1, r + 1 + free - travel)
    across = rng.uniform(r + 1, (h if dx else w) - r - 1)
    if dx:
        x0 = along if dx > 0 else w - along
        y0 = across
    else:
        y0 = along if dy > 0 else h - along
        x0 = across
    kind = _KINDS[rng.integers(len(_KINDS))]
    angle = rng.uniform(0, math.pi)
    colour = rng.integers(140, 256, size=3)
    background = _background(rng, size)
    frames = []
    for t in range(num_frames):
        frame = background.copy()
        _draw(cv2, frame, kind, x0 + dx * speed * t, y0 + dy * speed * t, r, angle, colour)
        frames.append(frame)
    return frames


def _write_mp4(path: str, frames: list[np.ndarray], fps: float) -> None:
    cv2 = _cv2()
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(
            f"OpenCV cannot write mp4 ({path}): its build lacks the mp4v (MPEG-4) encoder; "
            "install opencv-python from PyPI (bundles FFmpeg)"
        )
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))  # RGB -> BGR
    finally:
        writer.release()


def make_motion_videos(
    root: str,
    num_train: int = 64,
    num_val: int = 32,
    size: Sequence[int] = (64, 64),
    num_frames: int = 24,
    fps: float = 8.0,
    seed: int = 0,
) -> dict[str, dict[str, str]]:
    """Writes the motion-direction recognition set under ``root``.

    Labels are balanced (round robin over :data:`MOTION_CLASSES`, then shuffled), so chance
    accuracy is exactly 1/4 on a split whose size is a multiple of 4.

    Args:
        root: output folder (created).
        num_train, num_val: videos per split.
        size: ``(H, W)`` of the frames, even sides.
        num_frames: frames per video (a 16x4 sampler needs >= 61; 8x2 needs >= 15).
        fps: frame rate written into the mp4 header.
        seed: everything random derives from it.

    Returns:
        ``{split: {"videos": dir, "list": list file}}`` plus ``{"classes": {"file": path}}``.
    """
    size = _check_size(size, 32)
    if num_train < 1 or num_val < 1 or num_frames < 2 or fps <= 0:
        raise ValueError("need num_train, num_val >= 1, num_frames >= 2 and fps > 0")
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    out: dict[str, dict[str, str]] = {}
    for split, count in (("train", num_train), ("val", num_val)):
        video_dir = os.path.join(root, f"videos_{split}")
        os.makedirs(video_dir, exist_ok=True)
        labels = [i % len(MOTION_CLASSES) for i in range(count)]
        rng.shuffle(labels)
        lines = []
        for index, label in enumerate(labels):
            name = f"{index:06d}.mp4"
            _write_mp4(os.path.join(video_dir, name),
                       _motion_clip(rng, int(label), size, num_frames), fps)
            lines.append(f"{name} {int(label)}\n")
        list_file = os.path.join(root, f"{split}_list_videos.txt")
        with open(list_file, "w") as f:
            f.writelines(lines)
        out[split] = {"videos": video_dir, "list": list_file}
    classes = os.path.join(root, "classes.txt")
    with open(classes, "w") as f:
        f.writelines(f"{name}\n" for name in MOTION_CLASSES)
    out["classes"] = {"file": classes}
    return out


# ---------------------------------------------------------------------- AVA
class _Actor:
    """A shape that moves along one axis (bouncing off the borders) or stands still."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], slot: tuple[float, float],
                 num_frames: int) -> None:
        h, w = size
        self.r = rng.uniform(0.09, 0.13) * min(h, w)
        self.motion = int(rng.integers(1, 4))  # AVA_ACTIONS ids 1..3
        self.blink = bool(rng.random() < 0.35)
        self.kind = _KINDS[rng.integers(len(_KINDS))]
        self.angle = rng.uniform(0, math.pi)
        self.colour = rng.integers(150, 256, size=3)
        self.size = size
        # Actors live in their own vertical slot (left/right part of the frame) so they never
        # overlap; horizontal movers bounce inside the slot.
        lo, hi = slot[0] * w + self.r + 1, slot[1] * w - self.r - 1
        self.x_range = (lo, max(lo, hi))
        self.y_range = (self.r + 1, h - self.r - 1)
        self.x0 = rng.uniform(*self.x_range)
        self.y0 = rng.uniform(*self.y_range)
        self.speed = rng.uniform(1.2, 2.2) * min(h, w) / 64.0  # px per frame
        self.sign = 1 if rng.random() < 0.5 else -1
        self.phase = rng.integers(0, 4)

    @staticmethod
    def _bounce(start: float, lo: float, hi: float, distance: float) -> float:
        span = hi - lo
        if span <= 0:
            return lo
        pos = (start - lo + distance) % (2 * span)
        return lo + (pos if pos <= span else 2 * span - pos)

    def centre(self, t: int) -> tuple[float, float]:
        d = self.sign * self.speed * t
        if self.motion == 1:
            return self._bounce(self.x0, *self.x_range, d), self.y0
        if self.motion == 2:
            return self.x0, self._bounce(self.y0, *self.y_range, d)
        return self.x0, self.y0

    def colour_at(self, t: int) -> np.ndarray:
        if self.blink and (t + self.phase) % 4 < 2:
            return 255 - self.colour // 2  # flicker between two distinct colours
        return self.colour

    def box(self, t: int) -> tuple[float, float, float, float]:
        """Normalized ``(x1, y1, x2, y2)`` at frame ``t`` (0-based)."""
        h, w = self.size
        cx, cy = self.centre(t)
        return (max(0.0, (cx - self.r) / w), max(0.0, (cy - self.r) / h),
                min(1.0, (cx + self.r) / w), min(1.0, (cy + self.r) / h))

    def labels(self) -> list[int]:
        return [self.motion, 4] if self.blink else [self.motion]


def _jitter(rng: np.random.Generator, box: Sequence[float], amount: float) -> list[float]:
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    d = rng.uniform(-amount, amount, size=4) * np.array([bw, bh, bw, bh])
    out = np.clip(np.array(box) + d, 0.0, 1.0)
    return [float(v) for v in out]


def _label_map(path: str) -> None:
    with open(path, "w") as f:
        for action_id, name in AVA_ACTIONS:
            f.write(f'item {{\n  name: "{name}"\n  id: {action_id}\n}}\n')


def make_ava_shapes(
    root: str,
    num_train_videos: int = 64,
    num_val_videos: int = 24,
    size: Sequence[int] = (128, 128),
    seconds: int = 5,
    fps: int = 8,
    max_actors: int = 2,
    timestamp_start: int = 900,
    seed: int = 0,
) -> dict[str, str]:
    """Writes the AVA-format action-detection set under ``root`` (see the module docstring).

    The matching ``AVADataset`` settings are ``fps=fps``, ``timestamp_start=timestamp_start``,
    ``timestamp_end=timestamp_start + seconds``, ``num_classes=len(AVA_ACTIONS) + 1`` (index 0
    unused, as in AVA), with ``AVAMetric(num_classes=...)`` alike.

    Args:
        root: output folder (created).
        num_train_videos, num_val_videos: videos per split.
        size: ``(H, W)`` of the frames, even sides.
        seconds: video length; keyframes at ``timestamp_start + 2 .. + seconds - 2``.
        fps: frames per second (``seconds * fps`` frames per video).
        max_actors: actors per video, at most (1 to 3).
        timestamp_start: first second of the videos (AVA: 900, i.e. minute 15).
        seed: everything random derives from it.

    Returns:
        Paths: ``rawframes``, ``ann_{train,val}``, ``exclude_{train,val}``,
        ``proposals_{train,val}``, ``label_map``, plus ``timestamp_end`` and ``fps`` as strings.
    """
    cv2 = _cv2()
    size = _check_size(size, 64)
    if seconds < 5 or fps < 1 or not 1 <= max_actors <= 3:
        raise ValueError("need seconds >= 5, fps >= 1 and 1 <= max_actors <= 3")
    if num_train_videos < 1 or num_val_videos < 1:
        raise ValueError("need at least one video per split")
    rng = np.random.default_rng(seed)
    frames_dir = os.path.join(root, "rawframes")
    ann_dir = os.path.join(root, "annotations")
    os.makedirs(frames_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    num_frames = seconds * fps
    timestamp_end = timestamp_start + seconds
    out = {"rawframes": frames_dir}
    index = 0
    for split, count in (("train", num_train_videos), ("val", num_val_videos)):
        rows, proposals, keys = [], {}, []
        for _ in range(count):
            video_id = f"shapes{index:05d}"  # 11 characters, like YouTube ids
            index += 1
            n = int(rng.integers(1, max_actors + 1))
            slots = [(i / n, (i + 1) / n) for i in range(n)]
            actors = [_Actor(rng, size, slot, num_frames) for slot in slots]
            background = _background(rng, size)
            video_dir = os.path.join(frames_dir, video_id)
            os.makedirs(video_dir, exist_ok=True)
            for t in range(num_frames):
                frame = background.copy()
                for actor in actors:
                    cx, cy = actor.centre(t)
                    _draw(cv2, frame, actor.kind, cx, cy, actor.r, actor.angle,
                          actor.colour_at(t))
                # File img_{t+1:05d}.jpg holds frame t (AVA frames start at 1).
                cv2.imwrite(os.path.join(video_dir, f"img_{t + 1:05d}.jpg"), frame[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
            for second in range(timestamp_start + 2, timestamp_end - 1):
                # SampleAVAFrames centres the clip on file fps * (s - start) + 2 (its start
                # index is added twice), i.e. frame t = fps * (s - start) + 1.
                t = fps * (second - timestamp_start) + 1
                key = f"{video_id},{second:04d}"
                keys.append(key)
                props = []
                for person_id, actor in enumerate(actors):
                    box = actor.box(t)
                    for action in actor.labels():
                        rows.append(f"{video_id},{second:04d},{box[0]:.3f},{box[1]:.3f},"
                                    f"{box[2]:.3f},{box[3]:.3f},{action},{person_id}\n")
                    props.append([*_jitter(rng, box, 0.03), float(rng.uniform(0.92, 1.0))])
                # A false positive with a low score, dropped by person_det_score_thr=0.9.
                x, y = rng.uniform(0, 0.7, size=2)
                props.append([float(x), float(y), float(x + 0.25), float(y + 0.25),
                              float(rng.uniform(0.1, 0.5))])
                proposals[key] = np.array(props, dtype=np.float32)
        ann = os.path.join(ann_dir, f"ava_{split}_v2.2.csv")
        with open(ann, "w") as f:
            f.writelines(rows)
        exclude = os.path.join(ann_dir, f"ava_{split}_excluded_timestamps_v2.2.csv")
        excluded = keys[int(rng.integers(len(keys)))]
        with open(exclude, "w") as f:
            f.write(excluded + "\n")
        prop_file = os.path.join(ann_dir, f"ava_dense_proposals_{split}.FAIR.recall_93.9.pkl")
        with open(prop_file, "wb") as f:
            pickle.dump(proposals, f, protocol=4)
        out.update({f"ann_{split}": ann, f"exclude_{split}": exclude,
                    f"proposals_{split}": prop_file})
    label_map = os.path.join(ann_dir, "ava_action_list_v2.2_for_activitynet_2019.pbtxt")
    _label_map(label_map)
    out.update(label_map=label_map, timestamp_end=str(timestamp_end), fps=str(fps))
    return out
