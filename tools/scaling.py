#!/usr/bin/env python
"""How activation memory grows: what autograd saves for backward in one training forward, for
ours, timm and the official Hiera, as the image side (512-2048), the number of frames (8-32) and
the batch (1-8) grow, with the fitted growth law of each curve.

The bytes are counted, not sampled: the forward runs on fake tensors
(``torch._subclasses.FakeTensorMode``: shapes, strides and storages without data or compute), so
a 2048x2048 Hiera-B that would save 77 GiB for backward in the official code is counted in a
second, and the count is the same on every machine. The count is the benchmark's column
(``benchmark.saved_for_backward_mb(..., fake=True)``: distinct storages autograd saves,
parameters left out); ``tests/unit/test_benchmark.py`` checks that counting on fake tensors
gives exactly the real run's bytes. All three call
``F.scaled_dot_product_attention``, which on CPU tensors picks the flash kernel (it saves the
output and a log-sum-exp, never the attention matrix), as in docs/benchmarks.md's table.

    python tools/scaling.py --out docs/scaling.md --plot docs/scaling.png
    python tools/scaling.py --sweeps frames --out frames.md --plot frames.png

``--time ROUNDS`` also times a training step at every point (interleaved rounds, a step that
runs out of memory is reported as such) and plots it under the memory curves; it is meant for a
GPU (``tools/gpu_check.sh`` runs it): on a CPU the 2048 points take minutes per step and the
official model does not fit in memory.

    python tools/scaling.py --time 5 --device cuda --dtype bf16 --out s.md --plot s.png
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

warnings.filterwarnings("ignore", category=FutureWarning)  # timm's layer-import notices


def _load_benchmark():
    """``tools/benchmark.py`` (the implementations, built the same way), imported from its file
    under ``tools_benchmark`` as the tests do: nothing is added to ``sys.path``."""
    if "tools_benchmark" in sys.modules:
        return sys.modules["tools_benchmark"]
    spec = importlib.util.spec_from_file_location(
        "tools_benchmark", Path(__file__).resolve().with_name("benchmark.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["tools_benchmark"] = module
    spec.loader.exec_module(module)
    return module


benchmark = _load_benchmark()

#: Curves: the model, the implementations compared, the points ``(x, batch, input size)``.
SWEEPS: dict[str, dict] = {
    "image": dict(
        model="hiera_base_224", label="image side (px), Hiera-B, batch 1",
        impls=("ours", "ours-plain", "timm", "official"),
        points=[(s, 1, (s, s)) for s in (512, 768, 1024, 1536, 2048)],
    ),
    "sam2": dict(
        model="sam2_hiera_base_plus", label="image side (px), SAM 2 Hiera-B+ trunk, batch 1",
        impls=("ours", "ours-plain", "timm"),
        points=[(s, 1, (s, s)) for s in (512, 768, 1024, 1536, 2048)],
    ),
    "frames": dict(
        model="hiera_base_16x224", label="frames at 224x224, Hiera-B video, batch 1",
        impls=("ours", "ours-plain", "timm", "official"),
        points=[(t, 1, (t, 224, 224)) for t in (8, 16, 24, 32)],
    ),
    "batch": dict(
        model="hiera_base_224", label="batch at 224x224, Hiera-B",
        impls=("ours", "ours-plain", "timm", "official"),
        points=[(b, b, (224, 224)) for b in (1, 2, 4, 8)],
    ),
}


def fit_power(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a * x**k`` in log-log: ``(a, k)``; needs two distinct ``x``."""
    if len(set(xs)) < 2:
        raise ValueError("a growth law needs at least two points")
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    k = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
    return math.exp(my - k * mx), k


def _step_seconds(steps: dict[str, Callable[[], None]], rounds: int, device: str) -> dict:
    """Median seconds of each training step, interleaved round by round (load hits every
    implementation alike); a step that runs out of memory is reported as None."""
    timer = benchmark.Timer(device)
    times: dict[str, list[float] | None] = {}
    for impl, step in steps.items():  # warm-up: allocator, kernels
        try:
            step()
            times[impl] = []
        except torch.OutOfMemoryError:
            times[impl] = None
        if device == "cuda":
            torch.cuda.empty_cache()
    for _ in range(rounds):
        for impl, step in steps.items():
            if times[impl] is not None:
                times[impl].append(timer(step))
    return {i: None if t is None else statistics.median(t) for i, t in times.items()}


def run(
    sweeps: list[str],
    time_rounds: int = 0,
    device: str = "cpu",
    dtype: str = "fp32",
    impls: list[str] | None = None,
    max_points: int = 0,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """One row per (sweep, implementation, point): ``saved_mb`` (counted on fake tensors) and,
    with ``time_rounds``, ``step_s``, the median time of a training step (forward + backward,
    ``dtype`` autocast) on ``device``. ``impls`` keeps those implementations only,
    ``max_points`` the first points of each curve (0: all)."""
    rows = []
    for sweep in sweeps:
        spec = SWEEPS[sweep]
        wanted = [i for i in spec["impls"] if impls is None or i in impls]
        for x_value, batch, size in spec["points"][: max_points or None]:
            built = {i: benchmark.build(i, spec["model"], size) for i in wanted}
            x = torch.randn(batch, 3, *size)
            point, steps = {}, {}
            for impl, (model, fn) in built.items():
                model.train()
                point[impl] = dict(sweep=sweep, model=spec["model"], impl=impl, x=x_value,
                                   batch=batch, size="x".join(map(str, size)),
                                   saved_mb=benchmark.saved_for_backward_mb(
                                       model, fn, x, fake=True))
            if time_rounds:
                x = x.to(device)
                for impl, (model, fn) in built.items():
                    model.to(device)
                    steps[impl] = benchmark.make_step(fn, x, True, device,
                                                      benchmark.DTYPES[dtype])
                for impl, seconds in _step_seconds(steps, time_rounds, device).items():
                    point[impl]["step_s"] = seconds
            for row in point.values():
                rows.append(row)
                step = row.get("step_s", "")
                step = f", step {step:.3f} s" if isinstance(step, float) else (
                    ", out of memory" if "step_s" in row else "")
                log(f"{sweep:6s} {row['impl']:15s} {row['size']:>11s} b{batch}: "
                    f"{row['saved_mb']:9.1f} MiB{step}")
            del built, steps
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


#: One colour per implementation in every panel.
COLORS = {"ours": "C0", "ours-plain": "C1", "timm": "C2", "official": "C3"}
OURS = ("ours",)


def _mib(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "Activation memory of one training forward (fp32): MiB autograd saves for backward, "
        "parameters left out, counted on fake tensors (`tools/scaling.py`; the same on every "
        "machine). `ours` trains lean (the default); `ours-plain`: ours with "
        "`set_lean_training(False)`, plain autograd. Growth: `MiB = a * x^k` fitted per curve "
        "(least squares in log-log). The last column: ours over that implementation at the "
        "largest point.",
        "",
    ]
    for sweep, spec in SWEEPS.items():
        part = [r for r in rows if r["sweep"] == sweep]
        if not part:
            continue
        xs = sorted({r["x"] for r in part})
        impls = [i for i in spec["impls"] if any(r["impl"] == i for r in part)]
        lines += [f"**{spec['label']}**", "",
                  "| impl | " + " | ".join(str(x) for x in xs)
                  + " | growth k | ours / it |",
                  "|---|" + "---|" * (len(xs) + 2)]
        value = {(r["impl"], r["x"]): r["saved_mb"] for r in part}
        for impl in impls:
            ys = [value[(impl, x)] for x in xs]
            k = f"{fit_power(xs, ys)[1]:.2f}" if len(xs) > 1 else "–"
            ratios = [
                f"{value[(mine, xs[-1])] / ys[-1]:.2f}×"
                if impl not in OURS and (mine, xs[-1]) in value else "–"
                for mine in OURS
            ]
            lines.append(f"| {impl} | " + " | ".join(_mib(y) for y in ys)
                         + f" | {k} | " + " | ".join(ratios) + " |")
        lines.append("")
        if any("step_s" in r for r in part):
            lines += _time_table(part, xs, impls)
    return "\n".join(lines)


def _time_table(part: list[dict], xs: list, impls: list[str]) -> list[str]:
    """Training-step seconds per point; the last column: that implementation's time over
    ours at the largest point where both ran (> 1: ours is faster)."""
    step = {(r["impl"], r["x"]): r.get("step_s") for r in part}
    lines = ["| step time (s) | " + " | ".join(str(x) for x in xs) + " | growth k | it / ours |",
             "|---|" + "---|" * (len(xs) + 2)]
    for impl in impls:
        ys = [step.get((impl, x)) for x in xs]
        ran = [(x, y) for x, y in zip(xs, ys) if y]
        k = f"{fit_power(*map(list, zip(*ran)))[1]:.2f}" if len(ran) > 1 else "–"
        both = [x for x, y in ran if step.get(("ours", x))]
        ratio = f"{step[(impl, both[-1])] / step[('ours', both[-1])]:.2f}×" if (
            both and impl != "ours") else "–"
        cells = [f"{y:.3g}" if y else ("OOM" if (impl, x) in step else "–")
                 for x, y in zip(xs, ys)]
        lines.append(f"| {impl} | " + " | ".join(cells) + f" | {k} | {ratio} |")
    return [*lines, ""]


def plot(rows: list[dict], path: str) -> None:
    """One log-log panel per sweep: the counted points and each curve's fitted power law."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = [s for s in SWEEPS if any(r["sweep"] == s for r in rows)]
    quantities = [("saved_mb", "saved for backward (MiB)")]
    if any(r.get("step_s") for r in rows):
        quantities.append(("step_s", "training step (s)"))
    fig, axes = plt.subplots(len(quantities), len(sweeps), squeeze=False,
                             figsize=(4.2 * len(sweeps), 3.8 * len(quantities)))
    for row_axes, (key, ylabel) in zip(axes, quantities):
        for ax, sweep in zip(row_axes, sweeps):
            spec = SWEEPS[sweep]
            for impl in spec["impls"]:
                part = sorted((r["x"], r[key]) for r in rows
                              if r["sweep"] == sweep and r["impl"] == impl and r.get(key))
                if not part:
                    continue
                xs, ys = zip(*part)
                ax.plot(xs, ys, "o", color=COLORS[impl], ms=4)
                label = impl
                if len(xs) > 1:
                    a, power = fit_power(list(xs), list(ys))
                    ax.plot(xs, [a * x**power for x in xs], "-", color=COLORS[impl], lw=1)
                    label = f"{impl}: x^{power:.2f}"
                ax.plot([], [], "o-", color=COLORS[impl], ms=4, lw=1, label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(spec["label"], fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.legend(fontsize=7)
            ax.grid(True, which="both", lw=0.3)
    fig.suptitle("Activation memory of one training forward (fp32, counted on fake tensors)"
                 + ("; training-step time" if len(quantities) > 1 else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=list(SWEEPS))
    parser.add_argument("--time", type=int, default=0, metavar="ROUNDS",
                        help="also time a training step at every point (interleaved rounds; "
                        "meant for a GPU: on a CPU the large points take minutes and the "
                        "official model does not fit)")
    parser.add_argument("--impls", nargs="+", default=list(COLORS), choices=list(COLORS),
                        help="implementations to include (default: all)")
    parser.add_argument("--max-points", type=int, default=0,
                        help="only the first N points of each curve (0: all)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="fp32", choices=list(benchmark.DTYPES),
                        help="autocast dtype of the timed steps")
    parser.add_argument("--out", default="scaling.md", help="Markdown tables")
    parser.add_argument("--plot", default="scaling.png", help="PNG plot")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    rows = run(args.sweeps, args.time, args.device, args.dtype, args.impls, args.max_points)
    from hiera_backbones.checkpoints.io import write_atomic

    write_atomic(args.out, lambda tmp: Path(tmp).write_text(markdown(rows)))
    write_atomic(args.plot, lambda tmp: plot(rows, tmp))
    print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
