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
    res = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), REPO])
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = wheels.iterdir()
    res = run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)])
    assert res.returncode == 0, res.stderr[-2000:]
    code = (
        "import gfocal, gfocal_runtime\n"
        f"assert gfocal.__file__.startswith({str(site)!r}), gfocal.__file__\n"
        f"assert gfocal_runtime.__file__.startswith({str(site)!r})\n"
        "from gfocal import model_zoo\n"
        "for name in model_zoo.MODELS:\n"
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
