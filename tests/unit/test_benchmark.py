"""tools/benchmark.py: one small real run, and its ratio arithmetic."""

from __future__ import annotations

import json

import pytest
import torch
from tool_scripts import load_tool

benchmark = load_tool("benchmark")


def test_paired_ratio_cancels_drifting_load():
    # The machine gets 3x slower halfway: every implementation is hit in the same round.
    ours = [1.0, 1.0, 3.0, 3.0, 3.0]
    official = [1.5, 1.5, 4.5, 4.5, 4.5]
    assert benchmark.paired_ratio(official, ours) == pytest.approx(1.5)
    # A ratio of medians is thrown off when the slowdown lands between two implementations'
    # rounds: here it would say 4.5 / 1.0.
    assert benchmark.paired_ratio([1.5, 4.5, 4.5], [1.0, 1.0, 3.0]) < 4.5 / 1.0


def test_small_run_writes_table_plot_and_json(tmp_path, monkeypatch):
    # The "compiled" rows' plumbing with a quick backend; inductor itself: test_deploy.py.
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m: real_compile(m, backend="aot_eager"))
    out, plot, raw = tmp_path / "b.md", tmp_path / "b.png", tmp_path / "b.json"
    code = benchmark.main([
        "--models", "hiera_tiny_224", "--inputs", "image224", "--batch", "1", "--rounds", "1",
        "--out", str(out), "--plot", str(plot), "--json", str(raw),
    ])
    assert code == 0
    rows = {r["impl"]: r for r in json.loads(raw.read_text())}
    assert set(rows) == {"ours", "compiled", "official", "timm"}
    compiled = rows.pop("compiled")
    assert compiled["fwd_per_s"] > 0 and compiled["fwd_vs_eager"] > 0
    assert "fwd_bwd_per_s" not in compiled  # forward only
    # Every implementation counts the same model: Hiera-T 224 is 4.9 GMACs (paper Tab. 2).
    for row in rows.values():
        assert row["gmacs"] == pytest.approx(4.9, abs=0.1)
        assert row["params_m"] == pytest.approx(27.14, abs=0.01)  # 27.9 M with the head
        assert row["fwd_per_s"] > 0 and row["fwd_bwd_per_s"] > 0
    assert rows["ours"]["fwd_vs_official"] > 0 and rows["ours"]["fwd_bwd_vs_timm"] > 0
    table = out.read_text()
    assert table.count("| hiera_tiny_224 | image224 | 1 |") == 4
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_no_matching_pair_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--models", "hiera_base_16x224", "--inputs", "image224",
                        "--out", str(tmp_path / "b.md"), "--plot", str(tmp_path / "b.png")])
    assert "video models" in capsys.readouterr().err


def test_model_groups_and_unknown_names(tmp_path, capsys):
    assert benchmark.expand_models(["hiera-video", "hiera_base_16x224", "hvt_s_4"]) == [
        "hiera_base_16x224", "hiera_base_plus_16x224", "hiera_huge_16x224",
        "hiera_large_16x224", "hvt_s_4"]
    # 6 image + 4 video Hiera, 2 abs-win Hiera, 4 SAM 2 trunks, 7 HVT
    assert len(benchmark.expand_models(["all"])) == 23
    assert benchmark.expand_models(["sam2"]) == [
        "sam2_hiera_base_plus", "sam2_hiera_large", "sam2_hiera_small", "sam2_hiera_tiny"]
    with pytest.raises(SystemExit):
        benchmark.main(["--models", "hiera_bse_224", "--out", str(tmp_path / "b.md")])
    assert "unknown model 'hiera_bse_224'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_low_precision_run_and_missing_gpu(tmp_path, capsys):
    # The GPU table's code path (autocast at bf16), exercised on CPU with a tiny run.
    raw = tmp_path / "b.json"
    code = benchmark.main([
        "--models", "hiera_tiny_224", "--inputs", "image224", "--batch", "1", "--rounds", "1",
        "--no-backward", "--impls", "ours", "official", "--dtype", "bf16",
        "--out", str(tmp_path / "b.md"), "--plot", str(tmp_path / "b.png"), "--json", str(raw),
    ])
    assert code == 0
    rows = {r["impl"]: r for r in json.loads(raw.read_text())}
    assert set(rows) == {"ours", "official"} and rows["ours"]["fwd_vs_official"] > 0
    assert "cpu, bf16" in (tmp_path / "b.md").read_text()
    if not benchmark.torch.cuda.is_available():
        with pytest.raises(SystemExit):
            benchmark.main(["--device", "cuda", "--out", str(tmp_path / "c.md")])
        assert "no CUDA device" in capsys.readouterr().err


def test_sam2_trunk_rows_next_to_timm(tmp_path, monkeypatch):
    """SAM 2's trunk: ours, compiled and timm (no official Hiera); the same model counted."""
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m: real_compile(m, backend="aot_eager"))
    assert benchmark.implementations("sam2_hiera_tiny", (1024, 1024), ["ours", "compiled",
                                     "official", "timm"]) == ["ours", "compiled", "timm"]
    assert "official" not in benchmark.implementations("hiera_small_abswin_256", (256, 256),
                                                       ["official", "timm"])
    raw = tmp_path / "b.json"
    code = benchmark.main([
        "--models", "sam2_hiera_tiny", "--inputs", "image224", "--batch", "1", "--rounds", "1",
        "--out", str(tmp_path / "b.md"), "--plot", str(tmp_path / "b.png"), "--json", str(raw),
    ])
    assert code == 0
    rows = {r["impl"]: r for r in json.loads(raw.read_text())}
    assert set(rows) == {"ours", "compiled", "timm"}
    # The same model counted, plus the background embedding's resize 7x7 -> 56x56 (C = 96),
    # which ours runs as two counted matmuls and timm as an uncounted interpolation: widths
    # (h * C * w * W), then heights (H * h * W * C).
    resize_macs = 7 * 96 * 7 * 56 + 56 * 7 * 56 * 96
    extra = rows["ours"]["gmacs"] - rows["timm"]["gmacs"]
    assert extra * 1e9 == pytest.approx(resize_macs, rel=1e-3)
    assert rows["ours"]["params_m"] == pytest.approx(26.85, abs=0.01)
    assert rows["ours"]["fwd_vs_timm"] > 0 and rows["ours"]["fwd_bwd_vs_timm"] > 0


def test_saved_for_backward_counts_distinct_activation_storages():
    """Linear saves its input (its weight is a parameter: left out), ReLU its output: 2x4 + 2x8
    float32 values. A tensor saved twice, or as a view, counts once."""
    x = torch.randn(2, 4)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    assert benchmark.saved_for_backward_mb(model, model, x) * 2**20 == (2 * 4 + 2 * 8) * 4
    no_params = torch.nn.Identity()

    def twice(t):  # mul saves both operands: the same storage; t[0] is a view of it
        return t * t + t[0].exp()

    y = torch.randn(3, 5, requires_grad=True)
    # t * t saves y once; exp saves its result (5 values); y[0] is a view of y.
    assert benchmark.saved_for_backward_mb(no_params, twice, y) * 2**20 == (3 * 5 + 5) * 4


def test_memory_run_reports_saved_activations_and_ratios(tmp_path, monkeypatch):
    """``--memory``: the saved-for-backward column of each implementation and ours over theirs
    (peak RSS, measured in fresh processes, is test_readme_commands' and
    test_benchmark_memory_in_a_fresh_process's)."""
    monkeypatch.setattr(benchmark, "peak_memory_mb", lambda *args: 1.0)
    raw = tmp_path / "b.json"
    assert benchmark.main([
        "--models", "hiera_tiny_224", "--inputs", "image224", "--batch", "1", "--rounds", "1",
        "--impls", "ours", "official", "timm", "--memory",
        "--out", str(tmp_path / "b.md"), "--plot", str(tmp_path / "b.png"), "--json", str(raw),
    ]) == 0
    rows = {r["impl"]: r for r in json.loads(raw.read_text())}
    saved = {impl: row["saved_mb"] for impl, row in rows.items()}
    # Measured (Hiera-T, 224, batch 1, fp32): ours 54.2 MiB (lean training), official 98.6, timm
    # 105.8. Counted, not timed: the same on every machine, so a regression of a few MiB shows.
    assert 50 < saved["ours"] < 0.6 * saved["timm"], saved
    assert saved["official"] < saved["timm"] < 120, saved
    assert rows["ours"]["saved_vs_timm"] == pytest.approx(saved["ours"] / saved["timm"])
    assert rows["ours"]["saved_vs_official"] == pytest.approx(saved["ours"] / saved["official"])
    assert "| saved for bwd MiB |" in (tmp_path / "b.md").read_text()


def test_gpu_check_script_on_the_cpu_path(tmp_path):
    """tools/gpu_check.sh, the one command for a lent GPU, run through its CPU path at the
    smallest setting: it writes one table, plot and JSON per (input, dtype) run it was given,
    with the memory and saved-for-backward columns, skips runs whose model list is empty, leaves
    the official rows out where hiera-transformer is missing, times the scaling curves (here
    their first point) for the same implementations, and stops at once without CUDA."""
    import os
    import subprocess
    import sys

    from tool_scripts import ROOT

    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "MODELS_224": "hiera_tiny_224",
           "MODELS_DET": "", "MODELS_VIDEO": "", "BATCH_224": "1", "DTYPES": "fp32",
           "ROUNDS": "1", "WARMUP": "0", "IMPLS": "ours timm", "OMP_NUM_THREADS": "1",
           "SCALING": ""}
    out = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "image224_fp32.json", "image224_fp32.md", "image224_fp32.png"]
    rows = {r["impl"]: r for r in json.loads((tmp_path / "out" / "image224_fp32.json").read_text())}
    assert set(rows) == {"ours", "timm"}
    for row in rows.values():
        assert row["fwd_bwd_mem_mb"] > 0 and row["saved_mb"] > 0
    assert rows["ours"]["saved_vs_timm"] == pytest.approx(
        rows["ours"]["saved_mb"] / rows["timm"]["saved_mb"])
    assert "| saved for bwd MiB |" in out.stdout and "gpu_check: done" in out.stdout
    # Without the official package (an import of it fails, as on a machine that lacks it) its
    # rows are left out, with a note, instead of the run failing.
    fake = tmp_path / "no_hiera" / "hiera"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('hiera-transformer is not installed')\n")
    no_official = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_check.sh"), str(tmp_path / "no_official")],
        capture_output=True, text=True, timeout=600,
        env={**env, "IMPLS": "ours official", "PYTHONPATH": str(fake.parent)})
    assert no_official.returncode == 0, no_official.stdout[-2000:] + no_official.stderr[-2000:]
    assert "no official rows" in no_official.stderr
    rows = json.loads((tmp_path / "no_official" / "image224_fp32.json").read_text())
    assert [r["impl"] for r in rows] == ["ours"]
    # The scaling step: the first point of the batch curve, timed, for the same implementations.
    scaled = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_check.sh"), str(tmp_path / "scaling")],
        capture_output=True, text=True, timeout=600,
        env={**env, "MODELS_224": "", "SCALING": "batch", "SCALING_POINTS": "1",
             "SCALING_ROUNDS": "1", "SCALING_DTYPE": "fp32"})
    assert scaled.returncode == 0, scaled.stdout[-2000:] + scaled.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "scaling").iterdir()) == [
        "scaling.md", "scaling.png"]
    table = (tmp_path / "scaling" / "scaling.md").read_text()
    assert "| step time (s) |" in table and "| official |" not in table
    assert {"| ours |", "| ours-plain |", "| timm |"} <= {
        line[: line.index(" | ", 2) + 2] for line in table.splitlines() if line.startswith("| ")}
    missing = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), str(tmp_path / "x")],
                             capture_output=True, text=True, timeout=300,
                             env={**env, "DEVICE": "cuda", "CUDA_VISIBLE_DEVICES": ""})
    assert missing.returncode != 0 and "no CUDA device" in missing.stderr
    assert not any((tmp_path / "x").iterdir())  # nothing measured, nothing written


# ----------------------------------------------------------------------------- scaling curves
scaling = load_tool("scaling")


@pytest.mark.parametrize("impl,name,size", [
    ("ours", "hiera_tiny_224", (64, 64)),
    ("ours-plain", "hiera_tiny_224", (64, 64)),
    ("timm", "hiera_tiny_224", (64, 64)),
    ("official", "hiera_tiny_224", (64, 64)),
    ("official", "hiera_base_16x224", (4, 64, 64)),
    ("timm", "sam2_hiera_tiny", (64, 64)),
])
def test_counting_on_fake_tensors_gives_the_real_bytes(impl, name, size):
    """The scaling curves count on fake tensors; that count is exactly a real run's (the
    benchmark's column), for every implementation."""
    model, fn = benchmark.build(impl, name, size)
    model.train()
    x = torch.randn(2, 3, *size)
    fake = benchmark.saved_for_backward_mb(model, fn, x, fake=True)
    assert fake == benchmark.saved_for_backward_mb(model, fn, x) > 0


def test_power_fit_recovers_the_law():
    a, k = scaling.fit_power([512, 1024, 2048], [3.0 * x**2 for x in (512, 1024, 2048)])
    assert a == pytest.approx(3.0) and k == pytest.approx(2.0)


def test_scaling_tool_writes_tables_and_plot(tmp_path, monkeypatch):
    """A two-point sweep of Hiera-T: memory doubles with the batch (growth k = 1), lean training
    saves, steps are timed (``--time``), and the tables and the plot are written."""
    sweep = dict(model="hiera_tiny_224", label="batch at 64x64, Hiera-T",
                 impls=("ours", "ours-plain", "timm"),
                 points=[(b, b, (64, 64)) for b in (1, 2)])
    monkeypatch.setattr(scaling, "SWEEPS", {"batch": sweep})
    out, png = tmp_path / "s.md", tmp_path / "s.png"
    assert scaling.main(["--sweeps", "batch", "--time", "1", "--out", str(out),
                         "--plot", str(png)]) == 0
    memory, times = out.read_text().split("| step time (s) |")
    rows = [line.split(" | ") for line in memory.splitlines() if line.startswith("| ")]
    table = {r[0].strip("| "): r for r in rows[1:]}
    step_rows = [line.split(" | ") for line in times.splitlines()[2:] if line.startswith("| ")]
    assert [r[0].strip("| ") for r in step_rows] == ["ours", "ours-plain", "timm"]
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in step_rows)  # seconds, both points
    assert set(table) == {"ours", "ours-plain", "timm"}
    assert float(table["ours"][3]) == pytest.approx(1.0, abs=0.01)  # growth k
    ours, plain, timm = (float(table[i][2]) for i in ("ours", "ours-plain", "timm"))
    assert ours < 0.75 * plain and plain <= timm
    assert float(table["timm"][4].rstrip(" |×")) == pytest.approx(ours / timm, abs=0.01)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
