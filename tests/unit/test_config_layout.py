"""OpenMMLab config conventions (issue 14): as in MMAction2's and MMDetection's model zoos, the
model of every config in ``configs/mmaction`` and ``configs/mmdet`` comes from a
``_base_/models/`` file of its framework folder (one per backbone family and task), which the
paper and mini configs inherit and only override; each such file is used, holds nothing but the
model, names its users in its header, and builds on its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from frameworks import MMACTION_CONFIGS, MMDET_CONFIGS, one_thread
from mmengine.config import Config, ConfigDict

FOLDERS = {"mmaction": MMACTION_CONFIGS, "mmdet": MMDET_CONFIGS}

# Each _base_/models file: the model type, its backbone's class and arch.
BASE_MODELS = {
    ("mmaction", "hiera_base_16x224.py"): ("Recognizer3D", "Hiera", "hiera_base_16x224"),
    ("mmaction", "hvt_s_4.py"): ("Recognizer3D", "HVT", "hvt_s_4"),
    ("mmaction", "hiera_large_16x224_ava.py"): ("FastRCNN", "Hiera", "hiera_large_16x224"),
    ("mmaction", "hvt_s_1_ava.py"): ("FastRCNN", "HVT", "hvt_s_1"),
    ("mmdet", "mask-rcnn_hiera-b_fpn.py"): ("MaskRCNN", "Hiera", "hiera_base_224"),
}
# What a _base_/models file may define besides the model (no data, schedule or runtime).
MODEL_FILE_KEYS = {"_base_", "model", "custom_imports", "norm_cfg"}


def _configs(folder: str) -> list[Path]:
    """The runnable configs: the folder's own .py files, not those under _base_."""
    return sorted(FOLDERS[folder].glob("*.py"))


def _model_files(folder: str) -> list[Path]:
    return sorted((FOLDERS[folder] / "_base_" / "models").glob("*.py"))


def _bases(path: Path) -> list[str | Path]:
    """``path``'s ``_base_`` chain, depth first: local files as resolved paths, package configs
    (``mmaction::...``) as written."""
    chain: list[str | Path] = []
    for base in Config._get_base_files(str(path)):
        if "::" in base:
            chain.append(base)
        else:
            local = (path.parent / base).resolve()
            chain += [local, *_bases(local)]
    return chain


def _expected_model_file(folder: str, config: Path) -> str:
    """The _base_/models file a config's name calls for: its backbone family and task."""
    if folder == "mmdet":
        # HVT's Mask R-CNN is the Hiera one with the backbone (and so the FPN's inputs) swapped.
        return "mask-rcnn_hiera-b_fpn.py"
    family = config.name.split("-")[0]
    ava = re.search(r"_ava(22|-shapes)-rgb\.py$", config.name) is not None
    return {
        ("hiera", False): "hiera_base_16x224.py",
        ("hvt", False): "hvt_s_4.py",
        ("hiera", True): "hiera_large_16x224_ava.py",
        ("hvt", True): "hvt_s_1_ava.py",
    }[family, ava]


def test_the_table_lists_every_model_file():
    found = {(folder, p.name) for folder in FOLDERS for p in _model_files(folder)}
    assert found == set(BASE_MODELS)
    for folder in FOLDERS:  # _base_ holds model files only
        assert {p.name for p in (FOLDERS[folder] / "_base_").iterdir()} <= {"models", "__pycache__"}


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_every_config_inherits_its_model_file(folder):
    configs = _configs(folder)
    assert configs and not any("_base_" in p.parts for p in configs)
    models_dir = (FOLDERS[folder] / "_base_" / "models").resolve()
    used = set()
    for config in configs:
        chain = _bases(config)
        models = [p for p in chain if isinstance(p, Path) and p.parent == models_dir]
        assert [p.name for p in models] == [_expected_model_file(folder, config)], config.name
        used.update(models)
        assert all(p.is_file() for p in chain if isinstance(p, Path)), config.name
        if folder == "mmaction":
            assert "mmaction::_base_/default_runtime.py" in chain, config.name
        # Local bases stay inside the framework folder (configs of one framework only).
        assert all(FOLDERS[folder].resolve() in p.parents for p in chain if isinstance(p, Path))
    assert used == {p.resolve() for p in _model_files(folder)}  # each model file is used


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_model_files_hold_the_model_and_name_their_users(folder):
    configs = _configs(folder)
    for model_file in _model_files(folder):
        text = model_file.read_text()
        names = {
            target.id
            for node in ast.parse(text).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)
        }
        assert "model" in names and names <= MODEL_FILE_KEYS, model_file.name
        header = "".join(
            line[1:].strip() + " " for line in text.splitlines() if line.startswith("#")
        ).replace(" ", "")
        direct_users = [
            c.name for c in configs
            if model_file.resolve() in [
                (c.parent / b).resolve() for b in Config._get_base_files(str(c)) if "::" not in b
            ]
        ]
        assert direct_users, model_file.name
        for user in direct_users:  # lines may wrap inside a name; spaces are dropped
            assert user in header, f"{model_file.name}'s header does not name {user}"


def _drop_pretrained(cfg):
    """The model dict without pretrained weights: no downloads while building."""
    if isinstance(cfg, dict):
        return {
            k: None if k == "init_cfg" and isinstance(v, dict) and v.get("type") == "Pretrained"
            else _drop_pretrained(v)
            for k, v in cfg.items()
        }
    if isinstance(cfg, list):
        return [_drop_pretrained(v) for v in cfg]
    return cfg


@pytest.mark.parametrize("folder, name", sorted(BASE_MODELS))
def test_model_file_builds_on_its_own(folder, name):
    """A model file alone (with its custom_imports) gives the model it says it defines."""
    from mmengine.registry import DefaultScope

    if folder == "mmaction":
        pytest.importorskip("mmaction")
        from mmaction.registry import MODELS
    else:
        pytest.importorskip("mmdet")
        pytest.importorskip("mmcv.ops")
        from mmdet.registry import MODELS
    cfg = Config.fromfile(str(FOLDERS[folder] / "_base_" / "models" / name))
    model_type, backbone_type, arch = BASE_MODELS[folder, name]
    with one_thread(), DefaultScope.overwrite_default_scope(folder):
        model = MODELS.build(ConfigDict(_drop_pretrained(cfg.to_dict()["model"])))
    assert type(model).__name__ == model_type
    assert type(model.backbone).__name__ == backbone_type
    assert model.backbone.arch == arch
