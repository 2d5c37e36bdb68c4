"""``make demo`` (``tools/demo.py``), shortened to a few iterations, in both frameworks: it
writes its results and picture, and its per-class AP table (pycocotools on the framework's own
results file) reproduces the framework evaluator's overall AP."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from tool_scripts import load_tool

demo = load_tool("demo")


@pytest.mark.parametrize("framework", ["detectron2", "mmdet"])
def test_demo_writes_results_picture_and_per_class_ap(tmp_path, framework, capsys):
    pytest.importorskip(framework)
    out = tmp_path / "out"
    argv = ["--framework", framework, "--iters", "4", "--num-images", "2", "--output", str(out)]
    assert demo.main(argv) == 0
    summary = json.loads((out / f"results_{framework}.json").read_text())
    assert summary["iterations"] == 4 and summary["train_seconds"] > 0
    classes = ["square", "circle", "triangle"]
    for kind in ("bbox", "segm"):
        per_class = summary[f"{kind}_AP_per_class"]
        assert list(per_class) == classes
        assert all(0.0 <= v <= 100.0 for v in per_class.values())
    printed = capsys.readouterr().out
    assert all(name in printed for name in classes) and "mask AP" in printed
    # The table's "all" row is pycocotools' AP from the results file the evaluator wrote: the
    # evaluator's own number, to its rounding (MMDetection's CocoMetric rounds to 0.001 = 0.1
    # points; the summary keeps 2 decimals).
    ann_file = next((out / "datasets").rglob("instances_val.json"))
    results = {
        "detectron2": {"bbox": out / "detectron2" / "coco_instances_results.json"},
        "mmdet": {"bbox": out / "mmdet" / "coco_instances_results.bbox.json"},
    }[framework]
    again = demo.coco_ap_per_class(str(ann_file), str(results["bbox"]), "bbox")
    rounding = {"detectron2": 0.005, "mmdet": 0.05}[framework] + 1e-6
    assert again["all"] == pytest.approx(summary["bbox_AP"], abs=rounding)
    picture = Image.open(summary["picture"])
    width = json.loads(ann_file.read_text())["images"][0]["width"]
    # Ground truth beside predictions, upscaled 3x (+ 8 px gap); two rows under a caption.
    assert picture.size[0] == 2 * 3 * width + 8 and picture.size[1] > 2 * 3 * width
