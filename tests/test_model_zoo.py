"""gfocal.model_zoo and tools/convert_checkpoint.py."""

import os
import subprocess
import sys

import pytest
import torch
from gfl_testing import REPO
from mmdet_reference import MMGFL

from gfocal import model_zoo
from gfocal.errors import CheckpointError, ConfigError

NAME = "COCO-Detection/gfl_R_50_FPN_1x.py"


def test_every_published_model_has_a_config():
    assert len(MODELS_V1 := [n for n in model_zoo.MODELS if "/gfl_" in n]) == 6
    assert len([n for n in model_zoo.MODELS if "/gflv2_" in n]) == 5
    for name in model_zoo.MODELS:
        assert os.path.isfile(model_zoo.get_config_file(name))
    assert all(model_zoo.MODELS[n].url.startswith("https://download.openmmlab.com/") for n in MODELS_V1)
    with pytest.raises(ConfigError, match="not a GFocal config"):
        model_zoo.get_config_file("COCO-Detection/nope.py")


def test_get_trained_from_a_local_url_converts_once_and_caches(tmp_path):
    ref = MMGFL().eval()
    src = tmp_path / "official.pth"
    torch.save(ref.mmdet_state_dict(), src)
    cache = tmp_path / "cache"
    model = model_zoo.get(NAME, trained=True, device="cpu", url=src.as_uri(), cache_dir=str(cache))
    torch.testing.assert_close(model.head.gfl_reg.weight, ref.bbox_head.gfl_reg.weight)
    torch.testing.assert_close(model.backbone.top_block.p7.bias, ref.neck.fpn_convs[4].conv.bias)
    (converted,) = (cache / "converted").iterdir()
    assert converted.name.startswith("gfl_R_50_FPN_1x-") and len(list((cache / "downloads").rglob("official.pth"))) == 1
    mtime = converted.stat().st_mtime
    cfg = model_zoo.get_config(NAME, trained=True, url=src.as_uri(), cache_dir=str(cache))
    assert cfg.train.init_checkpoint == str(converted) and converted.stat().st_mtime == mtime  # cached
    # The cache is keyed on the URL and the config: another URL or model never gets this file.
    with pytest.raises(CheckpointError, match="may be offline"):
        model_zoo.get_config(NAME, trained=True, url="file:///nonexistent.pth", cache_dir=str(cache))
    other = "COCO-Detection/gfl_R_50_FPN_ms2x.py"
    assert model_zoo.get_checkpoint(other, url=src.as_uri(), cache_dir=str(cache)) != str(converted)


def test_downloads_are_https_and_hash_checked(tmp_path):
    """Official file names carry a sha256 prefix (torch.hub's convention): a file that does
    not match it is refused and deleted; plain http is never used."""
    import hashlib

    ref = MMGFL().eval()
    payload = tmp_path / "payload.pth"
    torch.save(ref.mmdet_state_dict(), payload)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    good = tmp_path / f"gfl_r50-{digest[:8]}.pth"
    bad = tmp_path / "gfl_r50-deadbeef.pth"
    good.write_bytes(payload.read_bytes())
    bad.write_bytes(payload.read_bytes())
    assert os.path.isfile(model_zoo.get_checkpoint(NAME, url=good.as_uri(), cache_dir=str(tmp_path / "c")))
    with pytest.raises(CheckpointError, match="does not match the sha256 prefix deadbeef"):
        model_zoo.get_checkpoint(NAME, url=bad.as_uri(), cache_dir=str(tmp_path / "c"))
    assert not list((tmp_path / "c" / "downloads").rglob("gfl_r50-deadbeef.pth*"))
    with pytest.raises(CheckpointError, match="only https"):
        model_zoo.get_checkpoint(NAME, url="http://example.com/gfl.pth", cache_dir=str(tmp_path / "c"))


def test_offline_download_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="may be offline"):
        model_zoo.get_checkpoint(NAME, url=(tmp_path / "missing.pth").as_uri(), cache_dir=str(tmp_path))
    with pytest.raises(CheckpointError, match="no direct URL"):
        model_zoo.get_checkpoint("COCO-Detection/gflv2_R_50_FPN_1x.py", cache_dir=str(tmp_path))


def run_convert(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools/convert_checkpoint.py"), *args], capture_output=True, text=True
    )


def test_convert_checkpoint_cli(tmp_path):
    src = tmp_path / "official.pth"
    torch.save(MMGFL(dgqp=True).mmdet_state_dict(), src)
    v2 = os.path.join(REPO, "configs/COCO-Detection/gflv2_R_50_FPN_1x.py")
    v1 = os.path.join(REPO, "configs/COCO-Detection/gfl_R_50_FPN_1x.py")
    res = run_convert(str(src), "-o", str(tmp_path / "out.pth"), "--config-file", v2)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "GFL v2 (DGQP)" in res.stdout and "no missing or unexpected keys" in res.stdout
    assert set(torch.load(tmp_path / "out.pth", weights_only=True)) >= {"model"}
    # A v2 checkpoint does not silently load into a v1 model.
    res = run_convert(str(src), "-o", str(tmp_path / "bad.pth"), "--config-file", v1)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 2 and len(errors) == 1 and "not in the model: head.reg_conf.0.weight" in errors[0]
    assert not (tmp_path / "bad.pth").exists()
    res = run_convert(str(tmp_path / "none.pth"), "-o", str(tmp_path / "x.pth"))
    assert res.returncode == 2 and "no such file" in res.stderr


def test_readme_model_zoo_table_is_generated_from_the_configs():
    import importlib.util

    spec = importlib.util.spec_from_file_location("model_zoo_table", os.path.join(REPO, "tools/model_zoo_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.table()
    assert text.count("\n| `COCO-Detection/") == len(model_zoo.MODELS) + len(model_zoo.DISTILLED)
    assert (
        "| `COCO-Detection/gflv2_X_101_32x4d_DCN_FPN_ms2x.py` | v2 | X-101-32x4d DCN c4-c5 | 2x, 480-960 | 48.8" in text
    )
    assert (
        "| `COCO-Detection/ld_gfl_R_18_FPN_1x.py` | v1, LD student of `gfl_R_101_FPN_ms2x` | R-18 | 1x, 800 "
        "| 35.8 alone -> 36.5 LD, 37.5 full recipe" in text
    )
    assert module.main(["--check"]) == 0, "run tools/model_zoo_table.py --write"
