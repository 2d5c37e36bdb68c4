#!/usr/bin/env python
"""Speed, FLOPs and memory of our backbones, next to the official Hiera and timm in one run.

For every (model, input) pair: parameters, counted multiply-adds, forward and forward+backward
throughput and peak memory. Hiera is also run through the official implementation
(``hiera-transformer``, built at the input size, ``return_intermediates=True``) and timm
(``forward_intermediates``, images only; the only other implementation of SAM 2's HieraDet
trunks ``sam2_hiera_*`` and of abs-win Hiera ``hiera_*_abswin_256``), interleaved round by round
so that load on the machine hits every implementation alike; a ratio is the median over rounds
of the two implementations' times in the same round. Writes a Markdown table and a PNG plot.

Forward timing runs under ``torch.inference_mode`` (our CPU forward then takes its fused oneDNN
path, see ``hiera_backbones.models.cpu_fusion``; ``HIERA_BACKBONES_CPU_FUSION=0`` times the
plain path); forward+backward is a training step through autograd. For the ``--compile-inputs``
(default image224) our model also runs through ``torch.compile`` (inductor; forward only, the
compilation itself is warm-up and not timed), reported as its speed-up over our eager forward.

    python tools/benchmark.py                                   # docs/benchmarks.md's CPU set
    python tools/benchmark.py --models hiera_base_224 --inputs image224 --batch 8 --rounds 10
    python tools/benchmark.py --device cuda --dtype bf16 --inputs image224   # GPU, paper table
    python tools/benchmark.py --models sam2 --inputs det1024 --rounds 3   # SAM 2 trunks vs timm

Inputs: image224 (224x224), det1024 (1024x1024, the detection input), video16x224 (16x224x224).
Peak memory is CUDA's allocator peak on GPU; on CPU it is the growth of the process's peak RSS
while one step runs, measured in a fresh subprocess per configuration (``--memory``). With
``--memory`` a training input also gets "saved for bwd": the MiB of the distinct storages
autograd saves during one training forward, parameters left out (the activation memory; counted,
not sampled, so the same on every machine; see ``saved_for_backward_mb``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

warnings.filterwarnings("ignore", category=FutureWarning)  # timm's layer-import notices

INPUTS = {
    "image224": (224, 224),
    "det1024": (1024, 1024),
    "video16x224": (16, 224, 224),
}
DEFAULT_MODELS = ["hiera_tiny_224", "hiera_base_224", "hiera_base_16x224", "hvt_s_4"]
#: Paper Tab. 16: A100 40GB, fp16, images/s at 224 (no FlashAttention, best batch).
PAPER_A100_FP16 = {
    "hiera_tiny_224": 2758, "hiera_small_224": 2211, "hiera_base_224": 1556,
    "hiera_base_plus_224": 1247, "hiera_large_224": 531, "hiera_huge_224": 274,
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


#: ``--models`` shorthands: every registered model of a family.
MODEL_GROUPS = {
    "all": lambda n: True,
    "hiera": lambda n: n.startswith("hiera"),
    "hiera-image": lambda n: n.startswith("hiera") and not _is_video(n),
    "hiera-video": lambda n: n.startswith("hiera") and _is_video(n),
    "hvt": lambda n: "hvt" in n,
    "sam2": lambda n: n.startswith("sam2_hiera"),
}


def expand_models(requested: list[str]) -> list[str]:
    """Registered model names for ``--models`` (groups expanded, order kept, no repeats)."""
    from hiera_backbones import list_models

    known = list_models()
    names: list[str] = []
    for item in requested:
        if item in MODEL_GROUPS:
            names += [n for n in known if MODEL_GROUPS[item](n)]
        elif item in known:
            names.append(item)
        else:
            raise ValueError(f"unknown model {item!r}: use one of {known} or a group "
                             f"({', '.join(MODEL_GROUPS)})")
    return list(dict.fromkeys(names))


def _is_video(name: str) -> bool:
    return "16x224" in name


def _pairs(models: list[str], inputs: list[str]) -> list[tuple[str, str]]:
    """Image models with image inputs, video models with video inputs."""
    return [(m, i) for m in models for i in inputs if _is_video(m) == (i == "video16x224")]


def build(impl: str, name: str, size: tuple[int, ...]) -> tuple[torch.nn.Module, Callable]:
    """A model and a function ``x -> list of stage maps`` for one implementation."""
    if impl in ("ours", "compiled", "ours-plain"):
        from hiera_backbones import build_backbone

        kwargs = {"input_size": size}
        if name.startswith(("hvt", "scale_hvt")):
            if len(size) == 3:
                kwargs.update(pooling="2d", video=True)
            elif size != (224, 224):
                kwargs.update(pooling="2d")
        model = build_backbone(name, **kwargs)
        if impl == "ours-plain":  # ours with lean training off: plain autograd
            model.set_lean_training(False)
        if impl == "compiled":
            compiled = torch.compile(model)
            return model, lambda x: list(compiled(x))
        return model, lambda x: list(model(x))
    if impl == "official":
        from hiera_backbones.parity import official_hiera

        model = official_hiera(name, input_size=size, num_classes=1)
        return model, lambda x: model(x, return_intermediates=True)[1]
    if impl == "timm":
        import timm

        if _is_video(name):
            model = _timm_video(name, size)
            return model, lambda x: model.forward_intermediates(
                x, intermediates_only=True, output_fmt="NHWC")
        if _timm_only(name):  # timm's HieraDet takes any size; abs-win is built for `size`
            from hiera_backbones.parity import timm_reference

            model = timm_reference(name, size)
        else:
            model = timm.create_model(name, img_size=size, num_classes=0)
        return model, lambda x: model.forward_intermediates(x, intermediates_only=True)
    raise ValueError(impl)


def _timm_video(name: str, size: tuple[int, ...]) -> torch.nn.Module:
    """timm's ``Hiera`` class built with the official video configuration (timm registers no
    video model, but its class takes 3-D patch, stride and mask-unit shapes); random weights.
    Its stage maps come out channels-last (``output_fmt="NHWC"``: timm permutes 4-D only)."""
    from timm.models.hiera import Hiera

    from hiera_backbones.models.hiera import HIERA_CONFIGS

    cfg = HIERA_CONFIGS[name]
    keys = ("embed_dim", "num_heads", "stages", "q_stride", "mask_unit_size", "patch_kernel",
            "patch_stride", "patch_padding", "sep_pos_embed")
    return Hiera(img_size=tuple(size), num_classes=0, **{k: cfg[k] for k in keys})


def _timm_only(name: str) -> bool:
    """Architectures whose only other implementation here is timm's (SAM 2's trunk, whose own
    code is outside the pinned stack, and abs-win Hiera)."""
    return name.startswith("sam2_hiera") or "abswin" in name


def implementations(name: str, size: tuple[int, ...], wanted: list[str]) -> list[str]:
    impls = ["ours", "ours-plain", "compiled"]
    if name.startswith("hiera") and not _timm_only(name):
        impls.append("official")
    if name.startswith("hiera") or _timm_only(name):
        impls.append("timm")  # video: timm's class with the official video configuration
    return [i for i in impls if i in wanted]


def count_macs(fn: Callable, x: torch.Tensor) -> float:
    """Multiply-adds of one forward (the paper's "FLOPs"). Attention runs through the math
    backend here so every implementation's attention is counted the same way."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn(x)
    return counter.get_total_flops() / 2  # a multiply-add is two FLOPs


def paired_ratio(reference: list[float], ours: list[float]) -> float:
    """Median over rounds of ``reference time / our time`` within each round."""
    return statistics.median(r / o for r, o in zip(reference, ours))


class Timer:
    def __init__(self, device: str) -> None:
        self.device = device

    def __call__(self, step: Callable[[], None]) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def _autocast(device: str, dtype: torch.dtype) -> torch.autocast:
    """Mixed precision for a low-precision ``dtype``; fp32 runs as is."""
    return torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32)


def make_step(fn: Callable, x: torch.Tensor, backward: bool, device: str, dtype: torch.dtype):
    autocast = _autocast(device, dtype)

    def step() -> None:
        if backward:
            with autocast:
                outs = fn(x)
            sum(o.float().mean() for o in outs).backward()
        else:
            with torch.inference_mode(), autocast:
                fn(x)

    return step


def peak_memory_mb(impl: str, name: str, input_key: str, batch: int, backward: bool,
                   device: str, dtype: str) -> float:
    """Peak memory of one step, measured in a fresh process (see the module docstring)."""
    if device == "cuda":
        model, fn = build(impl, name, INPUTS[input_key])
        model.to(device)
        x = torch.randn(batch, 3, *INPUTS[input_key], device=device)
        step = make_step(fn, x, backward, device, DTYPES[dtype])
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    code = (
        "import sys, torch, warnings; warnings.filterwarnings('ignore');"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r});"
        "import benchmark as b;"
        f"m, fn = b.build({impl!r}, {name!r}, b.INPUTS[{input_key!r}]);"
        f"x = torch.randn({batch}, 3, *b.INPUTS[{input_key!r}]);"
        f"step = b.make_step(fn, x, {backward}, 'cpu', torch.float32);"
        "print(b.cpu_step_peak_mb(step))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def saved_for_backward_mb(model: torch.nn.Module, fn: Callable, x: torch.Tensor,
                          dtype: torch.dtype = torch.float32, fake: bool = False) -> float:
    """MiB autograd keeps for backward during one training forward: the distinct storages of
    every tensor it saves, the model's own parameters and buffers left out. This is the
    activation memory a training step holds at its peak, counted rather than sampled, so the
    same code path gives the same number on any CPU or GPU (attention kernels that save
    different things, e.g. flash attention's log-sum-exp, are the exception).

    ``fake``: run on fake tensors (``FakeTensorMode``: shapes, strides and storages without data
    or compute, the model's tensors swapped for fake ones for the call), which counts the same
    bytes at any size in a second (``tools/scaling.py``)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.utils.stateless import _reparametrize_module

    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    mode: contextlib.AbstractContextManager = contextlib.nullcontext()
    swap: contextlib.AbstractContextManager = contextlib.nullcontext()
    if fake:
        mode = FakeTensorMode()
        state = {k: mode.from_tensor(v) for k, v in state.items()}
        x = mode.from_tensor(x)
        swap = _reparametrize_module(model, state)
    # A storage is known by its StorageImpl (fake storages have no data pointer).
    own = {t.untyped_storage()._cdata for t in state.values()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in own:  # a storage saved twice (or as views) counts once
            storages[storage._cdata] = max(storages.get(storage._cdata, 0), storage.nbytes())
        return tensor

    # The packed tensors stay referenced by the graph until `outs` is freed, so no storage is
    # reused while the forward runs.
    with mode, swap, _autocast(x.device.type, dtype), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outs = fn(x)
        del outs
    return sum(storages.values()) / 2**20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_step_peak_mb(step: Callable[[], None]) -> float:
    """Peak resident memory above the idle level while ``step`` runs (Linux): a thread samples
    /proc/self/statm every 0.5 ms (torch releases the GIL inside its kernels)."""
    import ctypes
    import gc
    import threading

    step()  # warm-up, so lazily created buffers are not counted
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back: a clean baseline
    except OSError:
        pass
    base = peak = _rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    step()
    done.set()
    sampler.join()
    return (max(peak, _rss_bytes()) - base) / 2**20


def run(args: argparse.Namespace) -> list[dict]:
    device, dtype = args.device, DTYPES[args.dtype]
    timer = Timer(device)
    rows = []
    for name, input_key in _pairs(args.models, args.inputs):
        size = INPUTS[input_key]
        batch = args.batch if args.batch else (8 if input_key == "image224" else 1)
        impls = [
            i for i in implementations(name, size, args.impls)
            if i != "compiled" or input_key in args.compile_inputs
        ]
        built = {i: build(i, name, size) for i in impls}
        x = torch.randn(batch, 3, *size, device=device)
        for model, _ in built.values():
            model.to(device).eval()
        info = {}
        for impl, (model, _) in built.items():
            info[impl] = {
                "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                # The compiled model's MACs are its eager model's (no tracing under the counter).
                "gmacs": count_macs(built["ours" if impl == "compiled" else impl][1], x[:1])
                / 1e9,
            }
        modes = (False, True) if args.backward and input_key in args.backward_inputs else (False,)
        for backward in modes:
            steps = {
                i: make_step(fn, x, backward, device, dtype)
                for i, (_, fn) in built.items()
                if not (backward and i == "compiled")  # compiled: forward only
            }
            for step in steps.values():  # warm-up: allocator, kernels, caches
                for _ in range(args.warmup):
                    step()
            times: dict[str, list[float]] = {i: [] for i in steps}
            for _ in range(args.rounds):
                for impl, step in steps.items():
                    times[impl].append(timer(step))
            key = "fwd_bwd" if backward else "fwd"
            for impl in steps:
                info[impl][f"{key}_s"] = statistics.median(times[impl])
                info[impl][f"{key}_per_s"] = batch / info[impl][f"{key}_s"]
                # Ratios pair the runs of one round (seconds apart), so load that drifts
                # over the run cancels; the median over rounds is reported.
                info[impl][f"{key}_times"] = times[impl]
        if args.memory:
            for impl in [i for i in impls if i != "compiled"]:
                for backward in modes:
                    info[impl]["fwd_bwd_mem_mb" if backward else "fwd_mem_mb"] = peak_memory_mb(
                        impl, name, input_key, batch, backward, device, args.dtype
                    )
                if True in modes:
                    model, fn = built[impl]
                    info[impl]["saved_mb"] = saved_for_backward_mb(model, fn, x, dtype)
        for impl in impls:
            row = {"model": name, "input": input_key, "batch": batch, "impl": impl, **info[impl]}
            if impl == "compiled" and "fwd_times" in info["ours"]:
                eager, compiled = info["ours"]["fwd_times"], info[impl]["fwd_times"]
                row["fwd_vs_eager"] = paired_ratio(eager, compiled)
            for ref in ("official", "timm", "ours-plain"):
                if ref in info and impl == "ours":
                    ours, other = info["ours"], info[ref]
                    for key in ("fwd", "fwd_bwd"):
                        if f"{key}_times" in ours:
                            row[f"{key}_vs_{ref}"] = paired_ratio(
                                other[f"{key}_times"], ours[f"{key}_times"]
                            )
                    for key in ("fwd_mem", "fwd_bwd_mem", "saved"):
                        if f"{key}_mb" in ours:
                            row[f"{key}_vs_{ref}"] = ours[f"{key}_mb"] / max(
                                other[f"{key}_mb"], 1e-3
                            )
            row = {k: v for k, v in row.items() if not k.endswith("_times")}
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                              for k, v in row.items()}), flush=True)
        del built
    return rows


def machine_description(device: str) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    desc = f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    if device == "cuda":
        desc = f"{torch.cuda.get_device_name()} ({desc})"
    return f"{desc}; torch {torch.__version__}"


def _fmt(row: dict, key: str, spec: str = ".1f", suffix: str = "") -> str:
    return f"{row[key]:{spec}}{suffix}" if key in row else "–"


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"Machine: {machine_description(args.device)}. Device {args.device}, {args.dtype}, "
        f"median of {args.rounds} interleaved rounds after {args.warmup} warm-up steps; "
        "ratios are medians of per-round ratios.",
        "",
        "| model | input | batch | impl | params (M) | GMACs | fwd /s | fwd+bwd /s "
        "| fwd peak MB | fwd+bwd peak MB | fwd vs official | fwd vs timm "
        "| fwd+bwd vs official | fwd+bwd vs timm | fwd mem vs official "
        "| fwd+bwd mem vs official | compiled vs eager | saved for bwd MiB "
        "| saved vs official | saved vs timm |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r["model"], r["input"], str(r["batch"]), r["impl"], f"{r['params_m']:.2f}",
            f"{r['gmacs']:.2f}", _fmt(r, "fwd_per_s", ".2f"), _fmt(r, "fwd_bwd_per_s", ".2f"),
            _fmt(r, "fwd_mem_mb", ".0f"), _fmt(r, "fwd_bwd_mem_mb", ".0f"),
            _fmt(r, "fwd_vs_official", ".2f", "×"), _fmt(r, "fwd_vs_timm", ".2f", "×"),
            _fmt(r, "fwd_bwd_vs_official", ".2f", "×"), _fmt(r, "fwd_bwd_vs_timm", ".2f", "×"),
            _fmt(r, "fwd_mem_vs_official", ".2f", "×"),
            _fmt(r, "fwd_bwd_mem_vs_official", ".2f", "×"), _fmt(r, "fwd_vs_eager", ".2f", "×"),
            _fmt(r, "saved_mb", ".1f"), _fmt(r, "saved_vs_official", ".2f", "×"),
            _fmt(r, "saved_vs_timm", ".2f", "×"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if args.device == "cuda":
        lines += ["", "| model | ours 224 img/s | paper A100 fp16 img/s |", "|---|---|---|"]
        for r in rows:
            if r["impl"] == "ours" and r["input"] == "image224" and r["model"] in PAPER_A100_FP16:
                lines.append(f"| {r['model']} | {r['fwd_per_s']:.0f} | "
                             f"{PAPER_A100_FP16[r['model']]} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str, args: argparse.Namespace) -> None:
    """Forward throughput per (model, input) and implementation as a PNG bar chart: log scale
    (HVT at 224 and Hiera at 1024 differ by 200x), each bar labelled, ours with its ratio to the
    official model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["model"], r["input"]) for r in rows}, key=lambda g: (g[1], g[0]))
    impls = ["ours", "compiled", "official", "timm"]
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(groups)), 4.5))
    width = 0.2
    labelled = set()
    for k, impl in enumerate(impls):
        for i, g in enumerate(groups):
            match = [r for r in rows if (r["model"], r["input"]) == g and r["impl"] == impl]
            if not match:
                continue
            row, x = match[0], i + (k - 1.5) * width
            ax.bar(x, row["fwd_per_s"], width, color=f"C{k}",
                   label=None if impl in labelled else impl)
            labelled.add(impl)
            label = f"{row['fwd_per_s']:.3g}"
            if "fwd_vs_official" in row:
                label += f"\n{row['fwd_vs_official']:.2f}×"
            ax.annotate(label, (x, row["fwd_per_s"]), ha="center", va="bottom", fontsize=6.5,
                        xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.margins(y=0.25)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{m}\n{i}" for m, i in groups], fontsize=7)
    ax.set_ylabel("forward throughput (samples/s, log scale)")
    batches = ", ".join(sorted({f"{r['input']} batch {r['batch']}" for r in rows}))
    ax.set_title(f"{args.device} {args.dtype} ({batches}); ours labelled with its speed-up over "
                 f"the official model\n{machine_description(args.device)[:90]}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="registered names, or the groups " + ", ".join(MODEL_GROUPS))
    parser.add_argument("--inputs", nargs="+", default=list(INPUTS), choices=list(INPUTS))
    parser.add_argument("--impls", nargs="+", default=["ours", "compiled", "official", "timm"],
                        choices=["ours", "ours-plain", "compiled", "official", "timm"],
                        help="compiled: ours through torch.compile (see --compile-inputs); "
                             "ours-plain: ours with lean training off (plain autograd)")
    parser.add_argument("--compile-inputs", nargs="*", default=["image224"], choices=list(INPUTS),
                        help="inputs that also time torch.compile(ours) (default: image224)")
    parser.add_argument("--batch", type=int, default=0,
                        help="batch size (default: 8 for image224, 1 otherwise)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="interleaved timing rounds (shared machines are noisy: use more)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-backward", dest="backward", action="store_false",
                        help="skip forward+backward timing")
    parser.add_argument("--backward-inputs", nargs="+", default=list(INPUTS),
                        choices=list(INPUTS),
                        help="inputs that also get forward+backward timing (default: all)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory (of each timed mode) and what autograd "
                        "saves for backward")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--out", default="benchmark_results.md", help="Markdown table")
    parser.add_argument("--plot", default="benchmark_results.png", help="PNG plot")
    parser.add_argument("--json", help="also write the raw rows as JSON")
    args = parser.parse_args(argv)
    try:
        args.models = expand_models(args.models)
    except ValueError as err:
        parser.error(str(err))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.device == "cpu" and args.dtype != "fp32":
        print("note: CPU low-precision timings use autocast", file=sys.stderr)
    torch.manual_seed(0)
    rows = run(args)
    if not rows:
        parser.error("no (model, input) pair: image models take image inputs, video models video")
    from hiera_backbones.checkpoints.io import write_atomic

    write_atomic(args.out, lambda tmp: Path(tmp).write_text(markdown(rows, args)))
    write_atomic(args.plot, lambda tmp: plot(rows, tmp, args))
    if args.json:
        write_atomic(args.json, lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)))
    print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
