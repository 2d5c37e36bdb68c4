"""Every ``hiera-convert``, ``tools/check_parity.py`` and ``tools/benchmark.py`` command that
README.md and the manual's pages (``docs/*.md``) show (their ```bash blocks, plus the examples in
check_parity.py's docstring behind docs/usage.md's "Check parity yourself") runs here at the
smallest size, and what it writes or prints is checked.

How a documented command becomes a test:

* :func:`documented_commands` reads the command lines (continuations joined, comments dropped,
  ``.venv/bin/python`` -> ``python``, ``python tools/convert.py`` -> ``hiera-convert``); the
  normalized line is the case id in ``CONVERT_CASES`` / ``PARITY_CASES`` / ``BENCHMARK_CASES``.
  ``test_every_documented_command_has_a_case`` fails with the command's text when the docs show
  a command that no case covers, or a case whose command left the docs.
* :func:`smallest` shrinks a command: the smallest model of the same kind (Hiera-T for image
  Hiera; Hiera-B for video, the smallest official video model; HVT as is), smaller sizes
  (``SMALLER``), one benchmark round. Everything else is the documented argument list, run in
  a folder holding the files it names, built with random weights in their publishers' formats
  (``checkpoint_files``); ``<model>:<tag>`` downloads are served from a pre-filled
  ``HIERA_BACKBONES_CACHE`` with downloading cut off.
* Tools are loaded with :func:`tool_scripts.load_tool` (importlib, from the file) and run as
  ``main(argv)``; ``hiera-convert`` is ``hiera_backbones.checkpoints.cli.main(argv)``.
"""

from __future__ import annotations

import ast
import json
import os
import random
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from checkpoint_files import (
    hvt_classifier,
    load_with_detectron2,
    load_with_mmengine,
    official_video,
    save_deit,
    save_hub_folder,
    save_hvt_release,
    save_official,
    save_official_mae,
    timm_vit,
)
from helpers import sharpen_
from tool_scripts import ROOT, TOOLS, load_tool

from hiera_backbones import build_backbone
from hiera_backbones.checkpoints import OFFICIAL_CHECKPOINTS, load_backbone_checkpoint
from hiera_backbones.checkpoints.cli import main as convert_main
from hiera_backbones.parity import official_hiera

README = ROOT / "README.md"
#: The manual's pages: their commands count as documented as much as the README's.
DOCS = ROOT / "docs"
#: Tools whose docstring examples count as documented commands (the docs point to them).
DOCSTRING_TOOLS = ("check_parity.py",)
COMMANDS = ("hiera-convert", "python tools/check_parity.py", "python tools/benchmark.py")


# ----------------------------------------------------------------------------- documented commands
def normalize(line: str) -> str:
    """One command line as its case id: words re-joined by single spaces, comments dropped, the
    interpreter and the converter spelled one way."""
    words = shlex.split(line, comments=True)
    if words[:1] == [".venv/bin/python"]:
        words[0] = "python"
    if words[:2] == ["python", "tools/convert.py"]:
        words[:2] = ["hiera-convert"]
    return shlex.join(words)


def commands_in_markdown(text: str) -> list[str]:
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        lines += block.replace("\\\n", " ").splitlines()
    return [normalize(line) for line in lines if line.strip()]


def commands_in_docstring(path: Path) -> list[str]:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return [normalize(line) for line in doc.splitlines() if line.startswith("    python ")]


def documented_pages() -> list[Path]:
    """README.md, then every ``docs/*.md`` in name order."""
    return [README, *sorted(DOCS.glob("*.md"))]


def documented_commands() -> list[str]:
    found = []
    for page in documented_pages():
        found += commands_in_markdown(page.read_text())
    for tool in DOCSTRING_TOOLS:
        found += commands_in_docstring(TOOLS / tool)
    return list(dict.fromkeys(c for c in found if c.startswith(COMMANDS)))


# ----------------------------------------------------------------------------- the size rule
SMALLEST_MODEL = (
    (re.compile(r"hiera_(small|base_plus|base|large|huge)_224"), "hiera_tiny_224"),
    (re.compile(r"hiera_(base_plus|large|huge)_16x224"), "hiera_base_16x224"),
)
#: Sizes (``--size``, ``--input-size``) and their small stand-ins: H and W stay multiples of 32,
#: T even.
SMALLER = {1024: 256, 768: 192, 512: 128, 224: 64, 16: 2}


def smallest(argv: list[str]) -> list[str]:
    """The same command for the smallest model of the same kind, at small sizes."""
    out, sizes = [], False
    for word in argv:
        if word.startswith("--"):
            sizes = word in ("--size", "--input-size")
        elif sizes:
            word = str(SMALLER.get(int(word), int(word)))
        for pattern, small in SMALLEST_MODEL:
            word = pattern.sub(small, word)
        out.append(word)
    if "--rounds" in out:
        out[out.index("--rounds") + 1] = "1"
    return out


def test_command_parsing_and_size_rule():
    text = (
        "intro\n```bash\n.venv/bin/python tools/check_parity.py hiera_base_224  --size 512 768\n"
        "hiera-convert a.pth b.pth --to mmdet   # comment\n"
        "python tools/benchmark.py --models hiera_large_16x224 \\\n    --rounds 15\n"
        "python tools/mm_train.py x.py\n```\n```python\nhiera-convert not.pth a.pth\n```\n"
    )
    found = commands_in_markdown(text)
    assert found == [
        "python tools/check_parity.py hiera_base_224 --size 512 768",
        "hiera-convert a.pth b.pth --to mmdet",
        "python tools/benchmark.py --models hiera_large_16x224 --rounds 15",
        "python tools/mm_train.py x.py",
    ]
    assert smallest(shlex.split(found[0])[2:]) == ["hiera_tiny_224", "--size", "128", "192"]
    assert smallest(shlex.split(found[2])[2:]) == ["--models", "hiera_base_16x224", "--rounds",
                                                   "1"]
    assert smallest(["./hiera_huge_224.mae_in1k_ft_in1k/", "--input-size", "16", "224", "224"]) \
        == ["./hiera_tiny_224.mae_in1k_ft_in1k/", "--input-size", "2", "64", "64"]


# ----------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Converted:
    """What a ``hiera-convert`` case must write (after :func:`smallest`)."""

    arch: str
    build_kwargs: dict
    source_format: str
    dropped: int = 0  # pretraining-only tensors left out
    extra_stdout: tuple[str, ...] = ()  # regexes for the lines after "wrote ..."
    source_file: str | None = None  # meta["source_file"], when not the input's name


_MAE = (r"dropped 110 pretraining-only tensors: decoder_blocks\.0\.attn\.proj\.bias, .*",)
_T = "hiera_tiny_224"
_B16 = "hiera_base_16x224"
_HVT_2D = {"input_size": [256, 256], "pooling": "2d", "patch_size": 4}

CONVERT_CASES: dict[str, Converted] = {
    "hiera-convert mae_hiera_base_224.pth hiera_b_mae_d2.pth --to detectron2 --input-size 1024 "
    "1024": Converted(_T, {"input_size": [256, 256]}, "hiera-official", 110, _MAE),
    "hiera-convert mae_hiera_base_224.pth weights/hiera_b_mae_d2.pth --to detectron2 "
    "--input-size 1024 1024": Converted(_T, {"input_size": [256, 256]}, "hiera-official", 110,
                                        _MAE),
    "hiera-convert hiera_base_224:mae_in1k hiera_b_mae_mmdet.pth --to mmdet":
        Converted(_T, {"input_size": [224, 224]}, "hiera-official", 110, _MAE),
    "hiera-convert mae_hiera_base_16x224.pth hiera_b16_mae_k400.pth --to mmaction":
        Converted(_B16, {"input_size": [16, 224, 224]}, "hiera-official", 110, _MAE),
    "hiera-convert hiera_base_16x224:mae_k400 checkpoints/hiera-b_mae-k400.pth --to mmaction":
        Converted(_B16, {"input_size": [16, 224, 224]}, "hiera-official", 110, _MAE),
    "hiera-convert hiera_base_16x224.pth hiera_b16_k400_ft.pth --to mmaction --keep-head "
    "--verify": Converted(
        _B16, {"input_size": [16, 224, 224], "num_classes": 400}, "hiera-official",
        extra_stdout=(r"verified against the (official|source) model: .*",),
    ),
    "hiera-convert hiera_base_16x224:mae_k400_ft_k400 checkpoints/hiera-b_k400-ft.pth --to "
    "mmaction --keep-head": Converted(_B16, {"input_size": [16, 224, 224], "num_classes": 400},
                                      "hiera-official"),
    "hiera-convert hiera_large_16x224:mae_k400_ft_k400 checkpoints/hiera-l_k400-ft.pth --to "
    "mmaction": Converted(_B16, {"input_size": [16, 224, 224]}, "hiera-official"),
    "hiera-convert ./hiera_base_224.mae_in1k_ft_in1k/ hiera_b.safetensors --to backbone":
        Converted(_T, {"input_size": [224, 224]}, "hiera-hub", source_file="model.safetensors"),
    "hiera-convert hvt_s_2.pth hvt_s_2_d2.pth --to detectron2 --input-size 1024 1024 "
    "--patch-size 4": Converted("hvt_s_2", _HVT_2D, "hvt-official"),
    "hiera-convert hvt_s_4:in1k weights/hvt_s_4_d2.pth --to detectron2 --input-size 1024 1024 "
    "--patch-size 4": Converted("hvt_s_4", _HVT_2D, "hvt-official"),
    "hiera-convert deit_small_patch16_224.pth hvt_s_4_deit.pth --to backbone --arch hvt_s_4 "
    "--num-heads 6": Converted(
        "hvt_s_4", {"input_size": [224, 224]}, "vit", 2,
        (r"dropped 2 pretraining-only tensors: cls_token, pos_embed\[cls\]",),
    ),
}


@dataclass(frozen=True)
class Parity:
    """What a ``check_parity.py`` case must print (after :func:`smallest`)."""

    header: str
    shapes: tuple[tuple[int, ...], ...]  # per stage
    full_size: bool = False  # the command is already at the smallest size it names


PARITY_CASES: dict[str, Parity] = {
    "python tools/check_parity.py hiera_base_224 --size 512 768": Parity(
        "hiera_tiny_224 at 128x192, batch 2, weights: random",
        ((2, 96, 32, 48), (2, 192, 16, 24), (2, 384, 8, 12), (2, 768, 4, 6)),
    ),
    "python tools/check_parity.py hiera_base_16x224 --size 16 224 224 --batch 1": Parity(
        "hiera_base_16x224 at 2x64x64, batch 1, weights: random",
        ((1, 96, 1, 16, 16), (1, 192, 1, 8, 8), (1, 384, 1, 4, 4), (1, 768, 1, 2, 2)),
    ),
    "python tools/check_parity.py hiera_base_224 --checkpoint hiera_base_224.pth": Parity(
        "hiera_tiny_224 at 224x224, batch 2, weights: hiera_tiny_224.pth (hiera-official)",
        ((2, 96, 56, 56), (2, 192, 28, 28), (2, 384, 14, 14), (2, 768, 7, 7)),
    ),
    # Hiera-B 16x224 is the smallest official video model and the command gives no size: it
    # runs as written, in a fresh interpreter.
    "python tools/check_parity.py hiera_base_16x224 --batch 1": Parity(
        "hiera_base_16x224 at 16x224x224, batch 1, weights: random",
        ((1, 96, 8, 56, 56), (1, 192, 8, 28, 28), (1, 384, 8, 14, 14), (1, 768, 8, 7, 7)),
        full_size=True,
    ),
}

BENCHMARK_CASES = (
    "python tools/benchmark.py --models hiera_base_224 hiera_base_16x224 hvt_s_4 --inputs "
    "image224 det1024 video16x224 --rounds 15 --backward-inputs image224 video16x224 --memory "
    "--out docs/benchmark_cpu.md --plot docs/benchmark_cpu.png",
)


def test_every_documented_command_has_a_case():
    documented = documented_commands()
    assert sum(c.startswith("hiera-convert") for c in documented) >= 10  # the parser works
    cases = [*CONVERT_CASES, *PARITY_CASES, *BENCHMARK_CASES]
    uncovered = [c for c in documented if c not in cases]
    assert not uncovered, "documented commands that no test runs (add a case here):\n" + "\n".join(
        uncovered)
    stale = [c for c in cases if c not in documented]
    assert not stale, "cases whose command the docs no longer show:\n" + "\n".join(stale)


# ----------------------------------------------------------------------------- input files
#: One tensor every source file holds under this name (official Hiera, HVT and timm ViT
#: alike): the converted file must hold the same values.
PROBE = "blocks.1.mlp.fc1.weight"


def _official_image(path: Path) -> dict:
    model = sharpen_(official_hiera("hiera_tiny_224"))
    save_official(path, model)
    return model.state_dict()


def _hub_folder(path: Path) -> dict:
    model = sharpen_(official_hiera("hiera_tiny_224"))
    save_hub_folder(path, model)
    return model.state_dict()


def _official_mae(name: str):
    def build(path: Path) -> dict:
        save_official_mae(path, name)
        return torch.load(path, weights_only=True, mmap=True)["model_state"]

    return build


def _official_video(path: Path) -> dict:
    model = official_video("hiera_base_16x224")
    save_official(path, model)
    return model.state_dict()


def _hvt_release(arch: str):
    def build(path: Path) -> dict:
        model = hvt_classifier(arch)
        save_hvt_release(path, model, arch)
        return model.state_dict()

    return build


def _deit(path: Path) -> dict:
    state = timm_vit("vit_small_patch16_224").state_dict()
    save_deit(path, state)
    return state


#: Every input file a (smallest) documented command names, by file name; ``<model>:<tag>``
#: sources by the name of the file they download.
BUILDERS = {
    "hiera_tiny_224.pth": _official_image,
    "mae_hiera_tiny_224.pth": _official_mae("hiera_tiny_224"),
    "hiera_base_16x224.pth": _official_video,
    "mae_hiera_base_16x224.pth": _official_mae("hiera_base_16x224"),
    "hiera_tiny_224.mae_in1k_ft_in1k": _hub_folder,
    "hvt_s_2.pth": _hvt_release("hvt_s_2"),
    "scale_hvt_ti_4.pth": _hvt_release("hvt_s_4"),  # hvt_s_4:in1k (the same release)
    "deit_small_patch16_224.pth": _deit,
}


@dataclass
class Shelf:
    """Input files, each built once per module (the video ones are 200 MB)."""

    root: Path
    probes: dict[str, torch.Tensor] = field(default_factory=dict)

    def get(self, name: str) -> Path:
        if name not in BUILDERS:
            raise AssertionError(f"no builder for {name!r}: add one to BUILDERS")
        path = self.root / name
        if name not in self.probes:
            torch.manual_seed(0)
            self.probes[name] = BUILDERS[name](path)[PROBE].clone()
        return path


@pytest.fixture(scope="module")
def shelf(tmp_path_factory):
    return Shelf(tmp_path_factory.mktemp("inputs"))


class Folder:
    """The folder a documented command runs in: the current directory, holding (links to) the
    files it names; ``<model>:<tag>`` is served from the download cache, and any download
    attempt fails the test."""

    def __init__(self, path: Path, shelf: Shelf, monkeypatch) -> None:
        self.path, self.shelf = path, shelf
        self.cache = path / "download-cache"
        self.cache.mkdir()
        monkeypatch.chdir(path)
        monkeypatch.setenv("HIERA_BACKBONES_CACHE", str(self.cache))

        def no_download(url, *args, **kwargs):
            raise AssertionError(f"tried to download {url}")

        monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)

    def provide(self, spec: str) -> str:
        """Puts the input ``spec`` names in place; returns its file name on the shelf."""
        if spec in OFFICIAL_CHECKPOINTS:
            name = os.path.basename(OFFICIAL_CHECKPOINTS[spec])
            (self.cache / name).symlink_to(self.shelf.get(name))
        else:
            name = os.path.basename(os.path.normpath(spec))
            (self.path / os.path.normpath(spec)).symlink_to(self.shelf.get(name))
        return name


@pytest.fixture
def folder(tmp_path, shelf, monkeypatch):
    return Folder(tmp_path, shelf, monkeypatch)


# ----------------------------------------------------------------------------- hiera-convert
#: The table of targets (docs/checkpoints.md): top-level key of the tensors and their key prefix.
TARGET_LAYOUT = {
    "backbone": ("state_dict", ""),
    "detectron2": ("model", "backbone.bottom_up."),
    "mmdet": ("state_dict", "backbone."),
    "mmaction": ("state_dict", "backbone."),
}


def _read_written(dst: str, to: str) -> tuple[dict, dict]:
    if dst.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(dst, "pt") as f:
            meta = {k: json.loads(v) for k, v in f.metadata().items()}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    saved = torch.load(dst, weights_only=True)  # plain tensors and containers only
    top = TARGET_LAYOUT[to][0]
    assert set(saved) == {top, "meta"}
    return saved[top], saved["meta"]


@pytest.mark.parametrize("command", list(CONVERT_CASES), ids=str)
def test_convert_command(command, folder, capsys):
    expect = CONVERT_CASES[command]
    argv = smallest(shlex.split(command)[1:])
    source = folder.provide(argv[0])
    dst, to = argv[1], argv[argv.index("--to") + 1]

    code = convert_main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "error" not in err and "Traceback" not in err  # (big files: a progress bar)
    lines = out.splitlines()
    size = tuple(expect.build_kwargs["input_size"])
    assert lines[0] == (f"wrote {dst}: {expect.arch} ({expect.source_format}) for {to}, prefix "
                        f"{TARGET_LAYOUT[to][1]!r}, input size {size}")
    assert len(lines) == 1 + len(expect.extra_stdout)
    for line, pattern in zip(lines[1:], expect.extra_stdout):
        assert re.fullmatch(pattern, line), line

    state, meta = _read_written(dst, to)
    prefix = TARGET_LAYOUT[to][1]
    num_classes = expect.build_kwargs.get("num_classes", 0)
    assert {k: meta[k] for k in ("arch", "build_kwargs", "target", "prefix", "with_head",
                                 "source_format", "source_file")} == {
        "arch": expect.arch, "build_kwargs": expect.build_kwargs, "target": to, "prefix": prefix,
        "with_head": num_classes > 0, "source_format": expect.source_format,
        "source_file": expect.source_file or source,
    }
    assert len(meta["dropped"]) == expect.dropped
    assert all(k.startswith(prefix) for k in state)
    assert torch.equal(state[prefix + PROBE], folder.shelf.probes[source])
    assert (prefix + "head.projection.weight" in state) == (num_classes > 0)

    # Loads the way the target framework loads it, into the model the metadata describes.
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["build_kwargs"].items()}
    model = build_backbone(meta["arch"], **kwargs)
    if to == "detectron2":
        incompatible = load_with_detectron2(dst, model)
        assert not incompatible.missing_keys and not incompatible.unexpected_keys
    elif to in ("mmdet", "mmaction"):
        load_with_mmengine(dst, model)
    else:
        load_backbone_checkpoint(model, dst)  # strict
    assert torch.equal(model.state_dict()[PROBE], state[prefix + PROBE])


# ----------------------------------------------------------------------------- check_parity.py
def _check_parity_output(out: str, expect: Parity, metric: str) -> None:
    lines = out.splitlines()
    assert lines[0] == expect.header
    assert len(lines) == len(expect.shapes) + 2
    for i, shape in enumerate(expect.shapes):
        assert re.fullmatch(rf"stage {i}: shape {re.escape(str(shape))}  {re.escape(metric)} "
                            r"\d\.\d{3}e[-+]\d\d", lines[i + 1]), lines[i + 1]
    assert lines[-1].startswith(f"OK: {metric} "), lines[-1]


@pytest.mark.parametrize("command", [c for c, p in PARITY_CASES.items() if not p.full_size],
                         ids=str)
def test_check_parity_command(command, folder, capsys):
    check_parity = load_tool("check_parity")
    argv = smallest(shlex.split(command)[2:])
    if "--checkpoint" in argv:
        folder.provide(argv[argv.index("--checkpoint") + 1])
    assert check_parity.main(argv) == 0
    _check_parity_output(capsys.readouterr().out, PARITY_CASES[command], check_parity.METRIC)


@pytest.mark.parametrize("command", [c for c, p in PARITY_CASES.items() if p.full_size],
                         ids=str)
def test_check_parity_command_as_written(command):
    proc = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    metric = load_tool("check_parity").METRIC
    _check_parity_output(proc.stdout, PARITY_CASES[command], metric)


def test_check_parity_checkpoint_files(folder, capsys):
    """``--checkpoint``: an MAE file at another size (embedding resized), and wrong files
    refused with one clear message."""
    check_parity = load_tool("check_parity")
    folder.provide("mae_hiera_tiny_224.pth")
    assert check_parity.main(["hiera_tiny_224", "--size", "64", "96", "--batch", "1",
                              "--checkpoint", "mae_hiera_tiny_224.pth"]) == 0
    _check_parity_output(capsys.readouterr().out, Parity(
        "hiera_tiny_224 at 64x96, batch 1, weights: mae_hiera_tiny_224.pth (hiera-official)",
        ((1, 96, 16, 24), (1, 192, 8, 12), (1, 384, 4, 6), (1, 768, 2, 3)),
    ), check_parity.METRIC)

    folder.provide("hvt_s_2.pth")
    Path("garbage.pth").write_bytes(random.Random(0).randbytes(4096))
    for path, message in (
        ("hvt_s_2.pth", "hvt_s_2.pth holds hvt_s_2 weights, not hiera_tiny_224"),
        ("garbage.pth", "garbage.pth is not a readable PyTorch checkpoint"),
        ("nope.pth", "nope.pth does not exist"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            check_parity.main(["hiera_tiny_224", "--checkpoint", path])
        assert exit_info.value.code == 2
        out, err = capsys.readouterr()
        assert not out
        assert err.splitlines()[-1].startswith("check_parity.py: error: --checkpoint: ")
        assert message in err, err


# ----------------------------------------------------------------------------- benchmark.py
#: Small stand-ins for the benchmark's input sizes (same names, so the documented flags apply).
SMALL_INPUTS = {"image224": (64, 64), "det1024": (128, 128), "video16x224": (2, 64, 64)}


def _table(markdown: str) -> list[dict[str, str]]:
    rows = [line.strip("|").split(" | ") for line in markdown.splitlines()
            if line.startswith("| ")]
    header = [h.strip() for h in rows[0]]
    return [dict(zip(header, (c.strip() for c in row))) for row in rows[1:]]


@pytest.mark.parametrize("command", BENCHMARK_CASES, ids=str)
def test_benchmark_command(command, tmp_path, monkeypatch, capsys):
    """The documented benchmark flags (docs/benchmarks.md) at small inputs. ``--memory``'s
    measurement (a fresh process per configuration, at the full-size inputs) is replaced by a
    record of what was asked, answering fixed sizes so that the table's memory columns and ratios
    can be checked; the measurement itself is ``test_benchmark_memory_in_a_fresh_process``.
    ``torch.compile`` returns the eager model (compiling takes minutes here and no documented
    flag selects it)."""
    benchmark = load_tool("benchmark")
    monkeypatch.setattr(benchmark, "INPUTS", SMALL_INPUTS)
    monkeypatch.setattr(torch, "compile", lambda model, *args, **kwargs: model)
    measured = []
    impl_mb = {"ours": 100.0, "official": 200.0, "timm": 400.0}

    def peak_memory_here(impl, name, input_key, batch, backward, device, dtype):
        measured.append((name, input_key, impl, backward))
        return impl_mb[impl] * (3 if backward else 1)

    monkeypatch.setattr(benchmark, "peak_memory_mb", peak_memory_here)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()  # as in the repository
    argv = smallest(shlex.split(command)[2:])
    assert benchmark.main(argv) == 0
    capsys.readouterr()
    assert Path("docs/benchmark_cpu.png").read_bytes().startswith(b"\x89PNG")
    text = Path("docs/benchmark_cpu.md").read_text()
    assert "median of 1 interleaved rounds" in text
    rows = _table(text)

    # --models (smallest of each kind) x --inputs: image models with image inputs, video with
    # video; every implementation that exists for the pair (timm's video: its class, built with
    # the official video configuration).
    compiled = any(r["impl"] == "compiled" for r in rows)  # torch.compile(ours), if timed

    def impls(model, inp):
        names = ["ours"] + (["compiled"] if compiled and inp == "image224" else [])
        if model.startswith("hiera"):
            names += ["official", "timm"]
        return names

    pairs = [("hiera_tiny_224", "image224"), ("hiera_tiny_224", "det1024"),
             ("hiera_base_16x224", "video16x224"), ("hvt_s_4", "image224"), ("hvt_s_4", "det1024")]
    assert [(r["model"], r["input"], r["batch"], r["impl"]) for r in rows] == [
        (m, i, "8" if i == "image224" else "1", impl) for m, i in pairs for impl in impls(m, i)
    ]
    number = re.compile(r"\d+(\.\d+)?×?")
    for r in rows:
        timed = r["impl"] != "compiled"  # compiled: forward only, no memory
        backward = timed and r["input"] != "det1024"  # --backward-inputs image224 video16x224
        ours_vs = r["impl"] == "ours" and r["model"].startswith("hiera")
        expected = {
            "fwd /s": True, "fwd+bwd /s": backward, "fwd peak MB": timed,  # --memory
            "fwd+bwd peak MB": backward, "fwd vs official": ours_vs, "fwd vs timm": ours_vs,
            "fwd+bwd vs official": ours_vs and backward,
            "fwd+bwd vs timm": ours_vs and backward, "fwd mem vs official": ours_vs,
            "fwd+bwd mem vs official": ours_vs and backward,
        }
        got = {k: bool(number.fullmatch(r[k])) for k in expected}
        assert got == expected, r
        assert all(r[k] == "–" for k, filled in expected.items() if not filled), r
    # --memory: every timed (implementation, mode), in its row with its ratio to the official.
    assert sorted(measured) == sorted(
        (r["model"], r["input"], r["impl"], backward) for r in rows if r["impl"] != "compiled"
        for backward in ((False, True) if r["fwd+bwd /s"] != "–" else (False,))
    )
    for r in rows:
        if r["impl"] != "compiled":
            mb = impl_mb[r["impl"]]
            assert (r["fwd peak MB"], r["fwd+bwd peak MB"]) == (
                f"{mb:.0f}", f"{3 * mb:.0f}" if r["fwd+bwd /s"] != "–" else "–")
        if r["fwd mem vs official"] != "–":
            assert r["fwd mem vs official"] == "0.50×"
        if r["fwd+bwd mem vs official"] != "–":
            assert r["fwd+bwd mem vs official"] == "0.50×"
    # Every implementation of a pair counts the same model.
    for pair in pairs:
        same = [r for r in rows if (r["model"], r["input"]) == pair]
        assert len({r["GMACs"] for r in same}) == 1, same
        params = [round(float(r["params (M)"]) * 100) for r in same]
        assert max(params) - min(params) <= 1, same  # the heads differ: at most 0.01 M
    ours = {(r["model"], r["input"]): r for r in rows if r["impl"] == "ours"}
    # At 64x64 (1x64x64) the position embeddings hold (56^2 - 16^2) x 96 (+ (8 - 1) x 96) =
    # 0.28 M fewer parameters than at 224 (16x224): Hiera-T 27.14 M, Hiera-B 16x224 50.78 M.
    assert ours["hiera_tiny_224", "image224"]["params (M)"] == "26.86"
    assert ours["hiera_base_16x224", "video16x224"]["params (M)"] == "50.51"


def test_benchmark_memory_in_a_fresh_process():
    """``--memory`` on CPU: a training step's peak RSS growth, measured in a subprocess."""
    benchmark = load_tool("benchmark")
    mb = benchmark.peak_memory_mb("ours", "hvt_ti_1", "image224", 1, True, "cpu", "fp32")
    assert 5 < mb < 200  # ~19 MB: activations kept for backward (HVT-Ti, batch 1, 224)

