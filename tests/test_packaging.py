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
        "import gfocal.analysis.label_errors, gfocal.checkpoint, gfocal.engine, gfocal.export, gfocal.modeling\n"
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
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    plain = sorted(r for r in requires if "extra ==" not in r)
    extras = sorted(r.split(";")[0].strip() for r in requires if "extra ==" in r)
    assert plain == ["Pillow", "numpy", "opencv-python"], requires
    assert [e.split(">")[0] for e in extras] == ["onnxruntime", "openvino"], requires
    assert {n.split("/")[0] for n in names} == {
        "gfocal_runtime",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    assert all(not n.startswith(("gfocal/", "torch", "detectron2")) for n in names)


def test_modules_moved_into_subpackages_import_under_their_old_names():
    """Configs saved before the package was grouped by role name the old module paths; in a
    fresh interpreter each old path is the module at its new one, and a saved config's
    ``_target_`` resolves."""
    code = (
        "import importlib, gfocal\n"
        "from detectron2.utils.registry import locate\n"
        "for old, new in gfocal.MOVED_MODULES.items():\n"
        "    assert importlib.import_module(old) is importlib.import_module(new), old\n"
        "from gfocal.engine import FastCOCOEvaluator\n"
        "assert locate('gfocal.evaluation.FastCOCOEvaluator') is FastCOCOEvaluator\n"
        "from gfocal.precision import cpu_has_bf16\n"
        "print(len(gfocal.MOVED_MODULES))\n"
    )
    res = run([sys.executable, "-c", code])
    assert res.returncode == 0 and res.stdout.strip() == "8", res.stderr[-2000:]
