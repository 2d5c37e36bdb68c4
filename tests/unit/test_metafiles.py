"""model-index.yml and the metafiles: every paper-scale config is listed once, with the official
pretrained backbone it starts from and the paper's numbers marked as the paper's."""

from __future__ import annotations

import glob
import os

import pytest
import yaml
from tool_scripts import ROOT

from hiera_backbones.checkpoints import OFFICIAL_CHECKPOINTS

FOLDERS = ("detectron2", "mmdet", "mmaction")


def _metafile(folder: str) -> dict:
    with open(os.path.join(ROOT, "configs", folder, "metafile.yml")) as f:
        return yaml.safe_load(f)


def test_model_index_imports_every_metafile():
    with open(os.path.join(ROOT, "model-index.yml")) as f:
        index = yaml.safe_load(f)
    assert index["Import"] == [f"configs/{folder}/metafile.yml" for folder in FOLDERS]


@pytest.mark.parametrize("folder", FOLDERS)
def test_metafile_lists_every_paper_scale_config(folder):
    meta = _metafile(folder)
    collections = {c["Name"] for c in meta["Collections"]}
    configs = sorted(
        os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", folder, "*.py"))
        if "mini" not in p and "demo" not in p
    )
    listed = [m["Config"] for m in meta["Models"]]
    assert sorted(listed) == configs  # each once, nothing missing, nothing stale
    for model in meta["Models"]:
        assert model["Name"] == os.path.splitext(os.path.basename(model["Config"]))[0]
        assert model["In Collection"] in collections
        tag = model["Metadata"]["Pretrained Backbone"]
        assert model["Weights"] == OFFICIAL_CHECKPOINTS[tag]
        with open(os.path.join(ROOT, model["Config"])) as f:
            assert tag in f.read(), f"{model['Config']} does not start from {tag}"
        source = model["Metadata"]["Results Source"]
        if source.startswith("paper"):
            assert model["Results"] and "not reproduced here" in source
            for result in model["Results"]:
                assert all(0 < v <= 100 for v in result["Metrics"].values())
        else:
            assert model["Results"] == [] and source.startswith("none")
