"""The frameworks' FLOP tools count our backbones as ``tools/benchmark.py`` does.

detectron2's ``tools/analyze_model.py --tasks flop`` (fvcore's jit counter through
``detectron2.utils.analysis.FlopCountAnalysis``) and MMDetection's / MMAction2's
``tools/analysis_tools/get_flops.py`` (mmengine's copy of it) trace the model with ``torch.jit``
and know no ``aten::scaled_dot_product_attention``: attention would count as zero. Under tracing
our attention is two explicit matmuls, so they count it. Both counters count multiply-adds of
convolutions, linears and matmuls exactly as ``torch.utils.flop_counter`` does (benchmark.py's
GMACs); they also count LayerNorm (5 per element), which benchmark.py does not. So: their count
minus their ``layer_norm`` entry equals benchmark.py's, exactly (integer counts, no tolerance).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from frameworks import MMACTION_CONFIGS, MMDET_CONFIGS, RECOG_DEMOS, one_thread
from tool_scripts import ROOT, load_tool

from hiera_backbones.models import HVT, Hiera, HieraDet

count_macs = load_tool("benchmark").count_macs

CASES = {
    "hiera-image": ("hiera_tiny_224", dict(input_size=(96, 96)), (1, 3, 96, 96)),
    "hiera-video": (
        dict(base="hiera_base_16x224", embed_dim=16, num_heads=1, stages=(1, 1, 1, 1)),
        dict(input_size=(4, 64, 64)),
        (1, 3, 4, 64, 64),
    ),
    "hvt": (
        dict(base="hvt_s_4", embed_dim=48, num_heads=2, depth=4),
        dict(input_size=(64, 64)),
        (1, 3, 64, 64),
    ),
    # Resizes its 7x7 background embedding to the 16x24 token grid in every forward (two
    # matmuls, counted by all three).
    "hieradet": (
        dict(base="sam2_hiera_tiny", embed_dim=32, num_heads=1, stages=(1, 1, 2, 1),
             window_spec=(8, 4, 4, 4), global_att_blocks=(3, 4)),
        dict(),
        (1, 3, 64, 96),
    ),
}
MODELS = {"hvt": HVT, "hieradet": HieraDet}


def _without_layer_norm(by_operator: dict[str, int]) -> int:
    return sum(v for op, v in by_operator.items() if op != "layer_norm")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("counter", ["fvcore", "mmengine"])
def test_jit_flop_counters_count_what_benchmark_counts(case, counter):
    arch, kwargs, shape = CASES[case]
    model = MODELS.get(case, Hiera)(arch, **kwargs).eval()
    x = torch.randn(shape)
    if counter == "fvcore":
        from fvcore.nn import FlopCountAnalysis
    else:
        from mmengine.analysis import FlopAnalyzer as FlopCountAnalysis
    with one_thread():
        analysis = FlopCountAnalysis(model, (x,))
        analysis.unsupported_ops_warnings(False)
        counted = analysis.by_module_and_operator()[""]
        expected = count_macs(model, x)
    assert "matmul" in counted, f"attention not counted: {sorted(counted)}"
    assert "aten::scaled_dot_product_attention" not in analysis.unsupported_ops()
    assert _without_layer_norm(counted) == expected


def test_detectron2_analyze_model_flop_and_parameter_tasks():
    """analyze_model.py's ``flop`` task (FlopCountAnalysis on a batch of one image, the table)
    and ``parameter`` task on the demo config: the backbone trunk's entry equals benchmark.py's
    MACs on the padded image the model actually runs."""
    pytest.importorskip("detectron2")
    from detectron2.config import LazyConfig, instantiate

    # analyze_model.py's imports.
    from detectron2.utils.analysis import FlopCountAnalysis, parameter_count_table
    from fvcore.nn import flop_count_table, parameter_count

    cfg = LazyConfig.load(
        os.path.join(ROOT, "configs", "detectron2", "mask_rcnn_hiera_demo_shapes.py")
    )
    model = instantiate(cfg.model).eval()
    inputs = [{"image": torch.rand(3, 64, 80) * 255}]
    with one_thread():
        flops = FlopCountAnalysis(model, inputs)
        flops.unsupported_ops_warnings(False)
        flops.uncalled_modules_warnings(False)
        table = flop_count_table(flops, max_depth=5)
        trunk = flops.by_module_and_operator()["model.backbone.bottom_up"]
        padded = model.preprocess_image(inputs).tensor
        expected = count_macs(model.backbone.bottom_up, padded)
    assert "aten::scaled_dot_product_attention" not in flops.unsupported_ops()
    assert trunk["matmul"] > 0 and _without_layer_norm(trunk) == expected
    assert "backbone.bottom_up" in table
    params = parameter_count(model)
    assert params["backbone.bottom_up"] == sum(
        p.numel() for p in model.backbone.bottom_up.parameters()
    )
    assert "backbone.bottom_up" in parameter_count_table(model, max_depth=5)


def _mim(*args: str, cwd: str) -> str:
    """``mim run <package> get_flops ...``: OpenMMLab's launcher finds the tool shipped inside
    the installed package (``<package>/.mim/tools``), as a user would run it."""
    mim = os.path.join(os.path.dirname(sys.executable), "mim")
    if not os.path.exists(mim):
        pytest.skip("openmim is not installed (make env installs it)")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    done = subprocess.run(
        [mim, "run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    return out


def _printed_gflops(out: str) -> float:
    value, unit = re.search(r"^Flops: ([\d.]+)([GM])", out, re.M).groups()
    return float(value) * (1.0 if unit == "G" else 1e-3)


def _config_backbone(config: str, scope: str) -> torch.nn.Module:
    """The config's backbone, built by the framework's registry (``custom_imports`` register
    ours), as the tool builds it."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(cfg.model.backbone).eval()


def test_mmdet_get_flops_through_mim(tmp_path):
    pytest.importorskip("mmdet")
    from hiera_backbones.data import ensure_coco_shapes

    data = tmp_path / "coco_shapes"
    ensure_coco_shapes(str(data), num_train=2, num_val=2, image_size=(64, 64))
    config = str(MMDET_CONFIGS / "mask-rcnn_hiera-mini_fpn_coco-shapes.py")
    out = _mim(
        "mmdet",
        "get_flops",
        config,
        "--cfg-options",
        f"data_root={data}/",
        f"val_dataloader.dataset.data_root={data}/",
        cwd=str(tmp_path),
    )
    assert "scaled_dot_product_attention" not in out
    # The whole detector on a 64x64 image: more than its backbone alone.
    backbone = _config_backbone(config, "mmdet")
    assert _printed_gflops(out) > count_macs(backbone, torch.randn(1, 3, 64, 64)) / 1e9


@pytest.mark.parametrize("family", sorted(RECOG_DEMOS))
def test_mmaction_get_flops_through_mim(tmp_path, family):
    pytest.importorskip("mmaction")
    config = str(MMACTION_CONFIGS / RECOG_DEMOS[family])
    out = _mim(
        "mmaction2", "get_flops", config, "--shape", "1", "3", "8", "64", "64", cwd=str(tmp_path)
    )
    assert "scaled_dot_product_attention" not in out
    backbone = _config_backbone(config, "mmaction")
    assert _printed_gflops(out) >= count_macs(backbone, torch.randn(1, 3, 8, 64, 64)) / 1e9
