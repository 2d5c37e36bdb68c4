"""Compile, export and deploy with default settings (the fused CPU path on): ``torch.compile``
(``fullgraph=True``, eval and train), ``torch.export`` (static, and dynamic H/W where the
architecture allows), ONNX through onnxruntime, and detectron2's ``TracingAdapter``.

Tracers must see the plain ops only: the fused path and its one-time self-check step aside
for them (``hiera_backbones.models.cpu_fusion.use_fusion``). Outputs are compared with eager
mode relative to the map's scale (:mod:`hiera_backbones.parity`).
"""

from __future__ import annotations

import pytest
import torch
from backbone_cases import BACKBONES, build_case
from tool_scripts import ROOT
from torch.export import Dim

from hiera_backbones import build_backbone
from hiera_backbones.models import cpu_fusion
from hiera_backbones.parity import assert_maps_close, map_errors

KINDS = sorted(BACKBONES)


def _eager(model, x):
    with torch.no_grad():
        return model(x)


@pytest.fixture
def fresh_self_check(monkeypatch):
    """As in a new process: the fused ops' self-check has not run yet."""
    monkeypatch.setattr(cpu_fusion, "_self_check_passed", None)


@pytest.mark.parametrize("kind", KINDS)
def test_compile_fullgraph_eval(kind, fresh_self_check):
    # aot_eager: Dynamo's graph capture and AOTAutograd, which is where a graph break or an
    # untraceable call (the fused path's self-check built a torch.Generator) would fail;
    # inductor's code generation is exercised once below.
    model, x = build_case(kind)
    model.eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        out = compiled(x)
    assert cpu_fusion._self_check_passed is None  # never ran inside the trace
    assert_maps_close(out, _eager(model, x))


@pytest.mark.parametrize("kind", KINDS)
def test_compile_fullgraph_train_with_checkpointing_and_drop_path(kind):
    model, x = build_case(kind, drop_path_rate=0.2, grad_checkpointing=True)
    model.train()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.manual_seed(1)
    sum(o.square().mean() for o in compiled(x)).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same drop-path draws in eager mode
    sum(o.square().mean() for o in model(x)).backward()
    assert len(grads) == sum(1 for p in model.parameters() if p.grad is not None) > 0
    for name, p in model.named_parameters():
        if p.grad is not None:
            (error,) = map_errors([grads[name]], [p.grad])
            assert error.rel <= 1e-4, f"{name}: {error}"


def test_compile_inductor_matches_eager(fresh_self_check):
    model, x = build_case("hiera")
    model.eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        out = compiled(x)
    # Inductor fuses and reorders the elementwise ops and reductions: still fp32 rounding.
    assert_maps_close(out, _eager(model, x))


@pytest.mark.parametrize("kind", KINDS)
def test_export_static(kind, fresh_self_check):
    model, x = build_case(kind)
    model.eval()
    program = torch.export.export(model, (x,))
    assert cpu_fusion._self_check_passed is None
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("mkldnn" in t for t in targets), "a fused oneDNN op was exported"
    assert_maps_close(program.module()(x), _eager(model, x))


@pytest.mark.parametrize("video", [False, True])
def test_export_dynamic_height_and_width_hvt(video):
    # Dynamic H and W need sides that every pool halves exactly: patch * 2**pools (here
    # 16 * 4). Otherwise the pooled sizes' parity (ceil(s / 2)) enters the trace as a guard.
    torch.manual_seed(0)
    model = build_backbone(
        "hvt_s_4", pooling="2d", video=video, embed_dim=32, num_heads=2, depth=4,
        pool_block_width=2,
    ).eval()
    assert model.num_stages == 3
    frames = (4,) if video else ()
    x = torch.randn(1, 3, *frames, 128, 192)
    side = Dim("h_units", min=2, max=32) * 64, Dim("w_units", min=2, max=32) * 64
    dynamic = {"x": {x.dim() - 2: side[0], x.dim() - 1: side[1]}}
    program = torch.export.export(model, (x,), dynamic_shapes=dynamic)
    other = torch.randn(1, 3, *frames, 256, 128)
    out = program.module()(other)
    ref = _eager(model, other)
    assert [tuple(o.shape[-2:]) for o in out] == [(16, 8), (8, 4), (4, 2)]
    assert_maps_close(out, ref)


@pytest.mark.parametrize("kind", ["hiera", "hvt_2d"])
def test_onnx_export_runs_in_onnxruntime(kind, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model, x = build_case(kind)
    model.eval()
    path = tmp_path / f"{kind}.onnx"
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (input_name,) = [i.name for i in session.get_inputs()]
    out = [torch.from_numpy(o) for o in session.run(None, {input_name: x.numpy()})]
    # onnxruntime's own fp32 kernels (MLAS GEMMs, its LayerNorm and Gelu): rounding only.
    assert_maps_close(out, _eager(model, x))


def test_detectron2_tracing_adapter_exports_hiera_mask_rcnn():
    pytest.importorskip("detectron2")
    from detectron2.config import LazyConfig, instantiate
    from detectron2.export import TracingAdapter

    import hiera_backbones.detectron2  # noqa: F401

    cfg = LazyConfig.load(str(ROOT / "configs" / "detectron2" / "mask_rcnn_hiera_tiny_100ep.py"))
    cfg.dataloader.image_size = 128
    cfg.model.backbone.square_pad = 128
    cfg.model.backbone.bottom_up.update(embed_dim=32, stages=(1, 1, 2, 1))
    cfg.model.roi_heads.box_predictor.test_score_thresh = 0.0  # untrained: keep its top boxes
    cfg.model.roi_heads.box_predictor.test_topk_per_image = 20
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    image = (torch.rand(3, 128, 128) * 255).round()
    inputs = [{"image": image}]  # tensors only: TracingAdapter flattens the inputs

    def inference(model, inputs):
        # Postprocessing (rescaling to height/width) is plain Python: left out of the trace.
        return model.inference(inputs, do_postprocess=False)

    adapter = TracingAdapter(model, inputs, inference)
    traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
    # The eager reference on the plain path, like the trace: an untrained detector's scores
    # are nearly tied, and fp32 rounding differences could reorder its top-k boxes.
    with torch.no_grad(), cpu_fusion.cpu_fusion(False):
        eager = inference(model, inputs)[0]
    with torch.no_grad():
        replay = adapter.outputs_schema(traced(*adapter.flattened_inputs))[0]
    assert len(eager) > 0
    assert len(replay) == len(eager)
    assert_maps_close(
        [replay.pred_boxes.tensor, replay.scores], [eager.pred_boxes.tensor, eager.scores],
        rtol=1e-4,
    )
