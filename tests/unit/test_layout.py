"""The layering rules of docs/architecture.md, checked on the source (an AST walk, no imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2 if Path(__file__).parent.name in ("unit", "e2e")
                                          else 1] / "hiera_backbones"
FRAMEWORKS = ("detectron2", "mmdet", "mmaction", "mmengine", "mmcv", "fvcore", "iopath")


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py")) if folder else sorted(PACKAGE.glob("*.py"))


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[: len(parts) - node.level])
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
    return found


def _calls(path: Path) -> set[str]:
    """Dotted names of every call in ``path`` (``torch.load``, ``urlopen``, ...)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            parts, f = [], node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                names.add(".".join([f.id, *reversed(parts)]))
    return names


@pytest.mark.parametrize("path", _modules("models"), ids=lambda p: p.name)
def test_models_import_no_framework_and_no_file_format_code(path):
    bad = {m for m in _imports(path)
           if m.split(".")[0] in FRAMEWORKS or m.startswith("hiera_backbones.checkpoints")}
    assert not bad, f"{path.name} imports {sorted(bad)}"
    assert not {"torch.load", "torch.save", "torch.hub.download_url_to_file"} & _calls(path)


@pytest.mark.parametrize("path", [*_modules("checkpoints"), *_modules("data"),
                                  PACKAGE / "layer_decay.py", PACKAGE / "parity.py"],
                         ids=lambda p: p.name)
def test_checkpoints_and_helpers_import_no_framework(path):
    bad = {m for m in _imports(path) if m.split(".")[0] in FRAMEWORKS}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [*_modules(""), *_modules("openmmlab"), *_modules("detectron2"),
                                  *_modules("models"), *_modules("data")],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_checkpoints_load_files_or_download(path):
    """Outside checkpoints/, no module calls torch.load or downloads: adapters go through
    checkpoints.load_torch_file / read_checkpoint / resolve_source."""
    used = _calls(path) & {"torch.load", "torch.hub.download_url_to_file",
                           "urllib.request.urlopen", "torch.hub.load_state_dict_from_url"}
    assert not used, f"{path.name} calls {sorted(used)}"


def test_no_constructor_loops_over_globals():
    for path in PACKAGE.rglob("*.py"):
        assert "globals()[" not in path.read_text(), path
