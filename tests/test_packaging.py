"""The package as a user installs it, and commands that start quietly."""

import os
import subprocess
import sys

import pytest
from gfl_testing import REPO


def run(args, cwd=REPO, env=None):
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env)


def test_installed_wheel_finds_every_config_outside_the_checkout(tmp_path):
    """`pip install .` (here: the wheel it builds, installed into a folder of its own) works
    from any directory: the configs ship inside the package."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    import shutil

    shutil.rmtree(os.path.join(REPO, "build"), ignore_errors=True)  # a stale build/lib would hide a missing package
    res = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), REPO]
    )
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = wheels.iterdir()
    res = run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)])
    assert res.returncode == 0, res.stderr[-2000:]
    code = (
        "import gfocal, gfocal_runtime\n"
        f"assert gfocal.__file__.startswith({str(site)!r}), gfocal.__file__\n"
        f"assert gfocal_runtime.__file__.startswith({str(site)!r})\n"
        "import gfocal.label_check, gfocal.checkpoint, gfocal.engine, gfocal.export, gfocal.modeling\n"
        "import gfocal_runtime.formats.yolo, gfocal_runtime.formats.voc, gfocal_runtime.formats.cvat\n"
        "import gfocal_runtime.formats.labelstudio, gfocal_runtime.formats.coco\n"
        "from gfocal import model_zoo\n"
        "for name in [*model_zoo.MODELS, *model_zoo.DISTILLED]:\n"
        "    model_zoo.get_config(name)\n"
        "cfg = model_zoo.get_config('COCO-Detection/gfl_R_50_FPN_1x.py')\n"
        "assert cfg.model.num_classes == 80 and model_zoo.get_config_file('Quickstart/gfl_shapes.py').startswith("
        f"{str(site)!r})\n"
        "print('ok')\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    res = run([sys.executable, "-c", code], cwd=str(elsewhere), env=env)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


@pytest.mark.parametrize(
    "command",
    [
        ["-c", "import gfocal"],
        ["train_net.py", "--help"],
        ["tools/quickstart.py", "--help"],
        ["demo/demo.py", "--help"],
        ["tools/export_model.py", "--help"],
    ],
    ids=["import", "train_net", "quickstart", "demo", "export"],
)
def test_commands_start_without_third_party_warnings(command):
    res = run([sys.executable, *command])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Warning" not in res.stderr and "warnings.warn" not in res.stderr, res.stderr[-2000:]


def test_only_the_known_warnings_are_filtered():
    """Filtering is by exact message: another FutureWarning (ours, or a new third-party one)
    still shows."""
    code = "import gfocal, warnings; warnings.warn('something else is deprecated', FutureWarning)"
    res = run([sys.executable, "-c", code])
    assert "FutureWarning: something else is deprecated" in res.stderr


def test_import_gfocal_changes_no_warning_filter():
    """``import gfocal`` silences Detectron2's import-time notices only while it imports it;
    the process's warning filters are the entry points' business."""
    code = (
        "import warnings\n"
        "before = list(warnings.filters)\n"
        "import gfocal\n"
        "assert warnings.filters == before, [f for f in warnings.filters if f not in before]\n"
        "print('ok')\n"
    )
    res = run([sys.executable, "-W", "default", "-c", code])
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
    assert "Warning" not in res.stderr, res.stderr[-2000:]


def test_runtime_wheel_requires_no_torch(tmp_path):
    """projects/GFocal/runtime builds a wheel of its own whose requirements are numpy, opencv,
    Pillow and, as extras, one back-end: nothing of torch, torchvision, detectron2, fvcore or
    pycocotools (so that ``pip install "./projects/GFocal/runtime[onnxruntime]"`` brings none)."""
    import shutil
    import zipfile

    source = tmp_path / "runtime"  # a copy: an in-place build would leave build/ in the checkout
    shutil.copytree(
        os.path.join(REPO, "projects/GFocal/runtime"), source, ignore=shutil.ignore_patterns("build", "*.egg-info")
    )
    res = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ]
    )
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("gfocal_runtime-*.whl")
    import gfocal

    assert wheel.name.split("-")[1] == gfocal.__version__  # one version number for both packages
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    plain = sorted(r for r in requires if "extra ==" not in r)
    extras = sorted(r.split(";")[0].strip() for r in requires if "extra ==" in r)
    assert plain == ["Pillow", "numpy", "opencv-python"], requires
    assert [e.split(">")[0] for e in extras] == ["PyYAML", "defusedxml", "onnxruntime", "openvino"], requires
    assert "gfocal_runtime/formats/labelstudio.py" in names  # subpackages ship too
    assert {n.split("/")[0] for n in names} == {
        "gfocal_runtime",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    assert all(not n.startswith(("gfocal/", "torch", "detectron2")) for n in names)


def test_configs_saved_before_the_regroup_load_with_their_targets_rewritten(tmp_path, caplog):
    """A config.yaml saved before the package was grouped by role names old module paths
    (``gfocal.evaluation.FastCOCOEvaluator``): load_config rewrites each to the new path with
    one warning, and installs no import hook (the old module paths themselves do not import)."""
    import importlib
    import logging

    from detectron2.config import LazyConfig
    from detectron2.utils.registry import locate

    from gfocal.config import MOVED_MODULES, load_config
    from gfocal.engine import FastCOCOEvaluator

    cfg = load_config(os.path.join(REPO, "configs/Quickstart/gfl_shapes.py"))
    cfg.dataloader.evaluator._target_ = "gfocal.evaluation.FastCOCOEvaluator"
    cfg.dataloader.tta = {"_target_": "gfocal.tta.check_tta_settings", "nested": [{"_target_": "gfocal.ema.X"}]}
    path = str(tmp_path / "old.yaml")
    LazyConfig.save(cfg, path)
    with caplog.at_level(logging.WARNING, logger="gfocal.config"):
        old = load_config(path, ["train.max_iter=3"])
    assert old.dataloader.evaluator._target_ == "gfocal.engine.evaluation.FastCOCOEvaluator"
    assert old.dataloader.tta._target_ == "gfocal.modeling.tta.check_tta_settings"
    assert old.dataloader.tta.nested[0]._target_ == "gfocal.engine.ema.X"
    assert old.train.max_iter == 3
    warnings = [r for r in caplog.records if "grouped by role" in r.getMessage()]
    assert len(warnings) == 1 and "3 target(s)" in warnings[0].getMessage()
    assert locate(old.dataloader.evaluator._target_) is FastCOCOEvaluator
    for module in MOVED_MODULES:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(module)


def test_runtime_is_the_ground_floor():
    """Every module of gfocal_runtime (the sahi adapter included) imports with torch,
    torchvision, detectron2, fvcore and gfocal made unimportable: the runtime imports nothing
    above it."""
    code = (
        "import importlib, importlib.abc, pkgutil, sys\n"
        "BLOCKED = ('torch', 'torchvision', 'detectron2', 'fvcore', 'gfocal')\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'blocked: {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import gfocal_runtime\n"
        "names = [m.name for m in pkgutil.walk_packages(gfocal_runtime.__path__, 'gfocal_runtime.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in BLOCKED]\n"
        "print(' '.join(sorted(names)))\n"
    )
    res = run([sys.executable, "-c", code])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "gfocal_runtime.sahi_model" in res.stdout.split() and "gfocal_runtime.boxes" in res.stdout.split()
