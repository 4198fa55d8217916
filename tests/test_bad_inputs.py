"""What happens when the input is wrong: the bad-input suite of GFocal's entry points.

Designed behaviour: every input from outside (checkpoints, configs and overrides, datasets,
demo inputs and outputs) either works or stops with ONE clear message naming what is wrong and
what was expected. The entry points (``train_net.py`` incl. ``--eval-only``,
``tools/quickstart.py``, ``demo/demo.py``, ``tools/convert_checkpoint.py``,
``tools/export_model.py``) run their ``main`` through :func:`gfocal.cli.run`: a ``GFocalError``
or ``FileNotFoundError`` prints ``error: <message>`` on stderr with exit status 2 and no
traceback (``--debug`` / ``GFOCAL_DEBUG=1`` show it); a diverging training run
(``FloatingPointError``) prints the message with exit status 1.

How the suite runs (2 CPU cores, no GPU, seconds per test):

* one tiny generated shapes dataset (4 classes) and one tiny model trained for 4 iterations are
  shared by the whole module (``shapes``, ``trained``);
* most cases call an entry point in-process (:func:`call`: the script's own ``main`` through
  ``gfocal.cli.run``, stderr and log records captured), which takes a fraction of a second;
* the wiring of each script's ``__main__`` (exit status, ``error:`` line, no traceback, debug
  switches) and the cases whose console log matters run the scripts as subprocesses
  (:func:`run_script`); scripts that train get the test datasets registered by a small
  bootstrap that then runs the unmodified script with ``runpy``.

Each test's docstring is one line: "<case>: <expected outcome>" (the README table "What happens
when..." is built from them). The case letters/numbers follow the bad-input brief (A checkpoints,
B configs and overrides, C datasets, D training faults, E demo and outputs).
"""

import contextlib
import importlib.util
import io
import json
import logging
import math
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import cv2
import numpy as np
import pytest
import torch
from gfl_testing import REPO, small_gfl
from PIL import Image

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.utils.logger import setup_logger

import gfocal.engine.train_loop
from gfocal import cli
from gfocal.analysis.plotting import read_metrics
from gfocal.checkpoint import GFLCheckpointer, load_checkpoint_file
from gfocal.config import load_config
from gfocal.data import ShapesSpec, checked_dataset_dicts, register_shapes
from gfocal.errors import CheckpointError
from gfocal.modeling import GFLHead

CONFIG = os.path.join(REPO, "configs/Quickstart/gfl_shapes.py")
CONFIG_MAX_ITER = 1500  # train.max_iter in CONFIG (case B7 names it)
PREFIX = "badin_shapes"  # the tiny shapes dataset of this module: badin_shapes_{train,val}
SPEC = dict(num_train=24, num_val=2, seed=2)
HEAD_64 = "model.head.input_shape=[" + ",".join(["{channels:64}"] * 5) + "]"
SCRIPTS = {
    "train_net": "train_net.py",
    "quickstart": "tools/quickstart.py",
    "demo": "demo/demo.py",
    "convert": "tools/convert_checkpoint.py",
    "export": "tools/export_model.py",
    "benchmark": "tools/benchmark.py",
    "benchmark_quickstart": "tools/benchmark_quickstart.py",
    "plot_metrics": "tools/plot_metrics.py",
    "model_zoo_table": "tools/model_zoo_table.py",
    "benchmark_small_objects": "tools/benchmark_small_objects.py",
}
FORCE_UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"

# Registers the datasets named in $GFOCAL_TEST_DATASETS, then runs the script (argv[1]) as
# `python script args...` would, __main__ block included.
BOOT = r"""
import json, os, runpy, sys
import gfocal
from detectron2.data.datasets import register_coco_instances
from gfocal.data import ShapesSpec, register_shapes
spec = json.loads(os.environ["GFOCAL_TEST_DATASETS"])
for prefix, root, kwargs in spec.get("shapes", []):
    register_shapes(prefix, ShapesSpec(**kwargs), root)
for name, json_file, image_root in spec.get("coco", []):
    register_coco_instances(name, {}, json_file, image_root)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


# ------------------------------------------------------------------------------------ helpers
@dataclass
class Run:
    """One entry-point run: exit status, stderr, stdout (subprocess) and log records (in-process)."""

    code: int
    err: str
    out: str = ""
    records: List[logging.LogRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def log(self) -> str:
        """Everything the user would see: stdout, stderr and the captured log messages."""
        messages = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.records)
        return "\n".join([self.out, self.err, messages])

    def warnings(self) -> List[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


_modules: Dict[str, object] = {}


def script(name: str):
    """The entry point's module, loaded from its file once (as tests/test_scripts.py does)."""
    if name not in _modules:
        spec = importlib.util.spec_from_file_location(f"badin_{name}", os.path.join(REPO, SCRIPTS[name]))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record):
        if not any(r is record for r in self.records):  # attached to several loggers
            self.records.append(record)


_LOGGERS = ("", "detectron2", "fvcore", "gfocal")


@contextlib.contextmanager
def _captured_logs():
    """Collect every log record of the call; afterwards remove the handlers the scripts'
    setup_logger calls added (so that in-process runs do not pile up handlers)."""
    handler = _Records()
    saved = {}
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.propagate, logger.level)
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for name, (handlers, propagate, level) in saved.items():
            logger = logging.getLogger(name)
            for h in list(logger.handlers):
                if h not in handlers:
                    logger.removeHandler(h)
                    if h is not handler:
                        h.close()
            logger.propagate = propagate
            logger.setLevel(level)
        setup_logger.cache_clear()


def call(name: str, argv: List[str]) -> Run:
    """Run an entry point in-process as its ``__main__`` block does (``gfocal.cli.run`` around
    ``main``; ``train_net.invoke_main``)."""
    module = script(name)
    argv = [str(a) for a in argv]
    err = io.StringIO()
    start = time.perf_counter()
    with _captured_logs() as records, contextlib.redirect_stderr(err):
        if name == "train_net":
            code = module.invoke_main(argv)
        else:
            code = cli.run(lambda: module.main(list(argv)), argv)
    return Run(code=code, err=err.getvalue(), records=list(records), seconds=time.perf_counter() - start)


def run_script(
    name: str,
    argv: List[str],
    env: Optional[Dict[str, str]] = None,
    datasets: Optional[dict] = None,
    timeout: int = 300,
) -> Run:
    """Run an entry point as a subprocess (cwd = repository). With ``datasets``, the test
    datasets are registered first (see BOOT) and the script runs unmodified via runpy."""
    path = os.path.join(REPO, SCRIPTS[name])
    cmd = [sys.executable] + (["-c", BOOT] if datasets else []) + [path] + [str(a) for a in argv]
    full_env = {k: v for k, v in os.environ.items() if k not in ("GFOCAL_DEBUG", FORCE_UNSAFE)}
    full_env["OMP_NUM_THREADS"] = "1"
    if datasets:
        full_env["GFOCAL_TEST_DATASETS"] = json.dumps(datasets)
    full_env.update(env or {})
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=full_env, timeout=timeout)
    return Run(code=res.returncode, err=res.stderr, out=res.stdout, seconds=time.perf_counter() - start)


def run_scripts(jobs: Dict[str, tuple]) -> Dict[str, Run]:
    """Several :func:`run_script` calls (key -> args) at once, 3 at a time."""
    with ThreadPoolExecutor(3) as pool:
        futures = {key: pool.submit(run_script, *job) for key, job in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


def one_error(run: Run, *words: str, code: int = 2) -> str:
    """Assert: exit status ``code``, no traceback, exactly one ``error:`` line on stderr, and
    every word in it. Returns the line."""
    lines = [line for line in run.err.splitlines() if line.startswith("error:")]
    assert run.code == code and len(lines) == 1 and "Traceback" not in run.err, (
        f"expected exit {code} with one 'error:' line and no traceback; got exit {run.code}, stderr:\n{run.err[-3000:]}"
    )
    missing = [w for w in words if w not in lines[0]]
    assert not missing, f"{missing} not in the error line {lines[0]!r}"
    return lines[0]


def tiny(out, max_iter: Optional[int] = 2, train_set: str = f"{PREFIX}_train") -> List[str]:
    """Overrides: the tiny dataset and model of this module, output into ``out``."""
    overrides = [
        f"dataloader.train.dataset.names={train_set}",
        f"dataloader.test.dataset.names={PREFIX}_val",
        "dataloader.train.total_batch_size=4",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
        "train.checkpointer.period=2",
        "train.log_period=1",
        f"train.output_dir={out}",
        "model.backbone.out_channels=64",
        "model.head.conv_dims=[64]",
        HEAD_64,
    ]
    if max_iter is not None:
        overrides.append(f"train.max_iter={max_iter}")
    return overrides


def write_image(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
    cv2.rectangle(image, (width // 4, height // 4), (width // 2, height // 2), (40, 200, 120), -1)
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    assert cv2.imwrite(str(path), image)


def write_coco(root, images, annotations, num_categories=4):
    """A COCO json in ``root/ann.json`` with images under ``root/images``.

    images: (file_name, width, height, exists_on_disk); annotations: (image index, bbox, category
    index). Non-finite numbers are written as Python's json does (NaN, Infinity)."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": c + 1, "name": f"class{c}"} for c in range(num_categories)],
    }
    for i, (file_name, width, height, exists) in enumerate(images):
        coco["images"].append({"id": i + 1, "file_name": file_name, "width": width, "height": height})
        if exists:
            write_image(os.path.join(root, "images", file_name), width, height, seed=i)
    for j, (image_index, bbox, category) in enumerate(annotations):
        w, h = bbox[2], bbox[3]
        area = w * h if all(map(math.isfinite, bbox)) else 0.0
        coco["annotations"].append(
            {
                "id": j + 1,
                "image_id": image_index + 1,
                "bbox": list(bbox),
                "category_id": category + 1,
                "iscrowd": 0,
                "area": area,
            }
        )
    json_file = os.path.join(root, "ann.json")
    with open(json_file, "w") as f:
        json.dump(coco, f)  # allow_nan: NaN / Infinity, which json.load accepts
    return json_file, os.path.join(root, "images")


def register_coco(name, json_file, image_root):
    if name not in DatasetCatalog.list():
        register_coco_instances(name, {}, json_file, image_root)


class _OpenFile:
    """Unpickling this object creates ``marker`` (open(marker, "w"))."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _Shell:
    """Unpickling this object runs ``touch marker`` (os.system)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def write_crafted(folder, fmt: str, payload: str = "open"):
    """A checkpoint file (.pth / .pkl / .pyth) that would create a marker file if unpickled
    as code. Returns (path, marker); the marker's folder exists, so only the loader stops it."""
    os.makedirs(os.path.join(folder, "markers"), exist_ok=True)
    marker = os.path.join(folder, "markers", f"{fmt}-{payload}.created")
    evil = (_OpenFile if payload == "open" else _Shell)(marker)
    path = os.path.join(folder, f"crafted-{payload}.{fmt}")
    if fmt == "pth":
        torch.save({"model": {"head.gfl_cls.weight": evil}}, path)
    elif fmt == "pyth":
        torch.save({"model_state": {"head.gfl_cls.weight": evil}}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump({"model": {"head.gfl_cls.weight": evil}, "__author__": "x"}, f)
    return path, marker


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("bad_inputs")


@pytest.fixture(scope="module")
def shapes(work):
    """The tiny 4-class shapes dataset (24 train, 2 val images), generated once."""
    root = str(work / "shapes")
    register_shapes(PREFIX, ShapesSpec(**SPEC), root)
    DatasetCatalog.get(f"{PREFIX}_train")
    DatasetCatalog.get(f"{PREFIX}_val")
    return root


@pytest.fixture(scope="module")
def datasets(shapes):
    """What BOOT registers in a subprocess: the tiny shapes dataset."""
    return {"shapes": [[PREFIX, shapes, SPEC]]}


@pytest.fixture(scope="module")
def trained(work, shapes):
    """The tiny model trained 4 iterations (checkpoints every 2): its output folder."""
    out = work / "trained"
    run = call("train_net", ["--config-file", CONFIG, *tiny(out, max_iter=4)])
    assert run.code == 0, run.err[-3000:]
    return out


@pytest.fixture(scope="module")
def weights(trained):
    return str(trained / "model_final.pth")


@pytest.fixture(scope="module")
def image(shapes):
    return os.path.join(shapes, "val", "000000.jpg")


def weights_argv(entry: str, weights: str, out, image: str):
    """(script, argv) that makes ``entry`` load ``weights``."""
    init = f"train.init_checkpoint={weights}"
    if entry == "train":
        return "train_net", ["--config-file", CONFIG, *tiny(out), init]
    if entry == "eval":
        return "train_net", ["--config-file", CONFIG, "--eval-only", *tiny(out), init]
    if entry == "quickstart":
        return "quickstart", [*tiny(out), init]
    if entry == "demo":
        return "demo", ["--config-file", CONFIG, "--input", image, "--output", out / "picture.png", *tiny(out), init]
    if entry == "export":
        return "export", ["--config-file", CONFIG, "--output", out / "export", *tiny(out), init]
    if entry == "convert":
        return "convert", [weights, "-o", out / "converted.pth"]
    raise ValueError(entry)


# ====================================================================== A. checkpoints are data
@pytest.mark.parametrize("unsafe_env", [False, True], ids=["default-env", FORCE_UNSAFE])
@pytest.mark.parametrize("fmt", ["pth", "pkl", "pyth"])
@pytest.mark.parametrize("entry", ["train", "eval", "demo", "quickstart", "convert", "export"])
def test_a1_checkpoint_that_runs_code_is_refused(entry, fmt, unsafe_env, tmp_path, image, shapes, monkeypatch):
    """A1 a checkpoint whose unpickling would create a file (.pth/.pkl/.pyth, any entry point, even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1): no file is created; exit 2, 'not a plain checkpoint' naming the file."""
    if unsafe_env:
        monkeypatch.setenv(FORCE_UNSAFE, "1")
    else:
        monkeypatch.delenv(FORCE_UNSAFE, raising=False)
    path, marker = write_crafted(tmp_path, fmt, "open" if fmt == "pth" else "system")
    run = call(*weights_argv(entry, path, tmp_path / "out", image))
    assert not os.path.exists(marker), f"unpickling {path} ran code: {marker} was created"
    one_error(run, "not a plain checkpoint", path)


@pytest.mark.parametrize("fmt", ["pth", "pkl", "pyth"])
def test_a1_loader_refuses_both_payloads(fmt, tmp_path, monkeypatch):
    """A1 the one checkpoint loader, open() and os.system payloads in each format with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1: CheckpointError 'not a plain checkpoint', no file created."""
    monkeypatch.setenv(FORCE_UNSAFE, "1")
    for payload in ("open", "system"):
        path, marker = write_crafted(tmp_path, fmt, payload)
        with pytest.raises(CheckpointError, match="not a plain checkpoint") as e:
            load_checkpoint_file(path)
        assert path in str(e.value)
        assert not os.path.exists(marker), f"{payload} payload in {path} ran"


def test_a1_checkpoint_that_runs_code_fresh_processes(tmp_path, image):
    """A1 as fresh processes with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (train_net --eval-only .pth, demo .pyth, converter .pkl): no file created; exit 2, one 'error:' line, no traceback."""
    env = {FORCE_UNSAFE: "1"}
    jobs, files = {}, {}
    for key, entry, fmt in [("eval", "eval", "pth"), ("demo", "demo", "pyth"), ("convert", "convert", "pkl")]:
        folder = tmp_path / key
        files[key] = write_crafted(folder, fmt, "system" if fmt == "pkl" else "open")
        name, argv = weights_argv(entry, files[key][0], folder / "out", image)
        jobs[key] = (name, argv, env, None)
    runs = run_scripts(jobs)
    for key, run in runs.items():
        path, marker = files[key]
        assert not os.path.exists(marker), f"{key}: {marker} was created"
        one_error(run, "not a plain checkpoint", path)


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL], ids=["protocol2", "protocol4", "highest"])
def test_a2_detectron2_model_zoo_pkl_still_loads(protocol, tmp_path):
    """A2 a Detectron2 model-zoo .pkl ({'model': {name: numpy array}, '__author__'}, any pickle protocol): GFLCheckpointer loads it and the weights equal the file's."""
    source = small_gfl(seed=0).state_dict()
    zoo = {"model": {k: v.numpy().copy() for k, v in source.items()}, "__author__": "Detectron2 Model Zoo"}
    path = tmp_path / "model_zoo.pkl"
    with open(path, "wb") as f:
        pickle.dump(zoo, f, protocol=protocol)
    model = small_gfl(seed=1)
    assert not torch.equal(model.state_dict()["head.gfl_cls.weight"], source["head.gfl_cls.weight"])
    GFLCheckpointer(model, for_inference=True).load(str(path))
    loaded = model.state_dict()
    different = [k for k, v in source.items() if not torch.equal(loaded[k], v)]
    assert not different, f"not loaded: {different[:5]}"


@pytest.fixture(scope="module")
def not_checkpoints(work, weights):
    """Files that are not checkpoints: text, random bytes, truncated (as .pth and .pkl)."""
    folder = work / "not_checkpoints"
    folder.mkdir()
    text = b"this is a text file, not a checkpoint\n"
    noise = np.random.default_rng(0).bytes(4096)
    pth = open(weights, "rb").read()
    pkl = pickle.dumps({"model": {"w": np.zeros((64, 64), np.float32)}, "__author__": "x"})
    contents = {
        "text.pth": text,
        "random.pth": noise,
        "truncated.pth": pth[: len(pth) // 2],
        "text.pkl": text,
        "random.pkl": noise,
        "truncated.pkl": pkl[: len(pkl) // 2],
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("kind", ["text.pth", "random.pth", "truncated.pth", "text.pkl", "random.pkl", "truncated.pkl"])
@pytest.mark.parametrize("entry", ["train", "eval", "demo", "convert", "quickstart"])
def test_a3_file_that_is_not_a_checkpoint(entry, kind, not_checkpoints, tmp_path, image):
    """A3 a text file, random bytes or a truncated checkpoint as weights (train, eval, demo, converter, quick start): exit 2, one line naming the file and 'not a PyTorch checkpoint' (.pth) / 'not a pickled checkpoint' (.pkl)."""
    path = str(not_checkpoints / kind)
    run = call(*weights_argv(entry, path, tmp_path / "out", image))
    expected = "not a PyTorch checkpoint" if kind.endswith(".pth") else "not a pickled checkpoint"
    one_error(run, path, expected)


@pytest.mark.parametrize("entry", ["eval", "demo"])
def test_a4_four_class_checkpoint_with_seven_class_model(entry, weights, tmp_path, image):
    """A4 a 4-class checkpoint evaluated / used by the demo with model.num_classes=7: exit 2, the error names head.gfl_cls.weight and says 'set model.num_classes=4'."""
    name, argv = weights_argv(entry, weights, tmp_path / "out", image)
    run = call(name, argv + ["model.num_classes=7"])
    one_error(run, weights, "head.gfl_cls.weight", "set model.num_classes=4")


@pytest.fixture(scope="module")
def finetuned(work, weights, datasets):
    """train_net (subprocess) fine-tuning the 4-class checkpoint with model.num_classes=7."""
    out = work / "finetune"
    run = run_script(
        "train_net",
        ["--config-file", CONFIG, *tiny(out, max_iter=1), f"train.init_checkpoint={weights}", "model.num_classes=7"],
        datasets=datasets,
    )
    assert run.code == 0, run.err[-3000:]
    return out, run


def _one_reinit_line(text: str, where: str):
    lines = [line for line in text.splitlines() if "head.gfl_cls" in line]
    assert len(lines) == 1 and "head.gfl_cls.weight" in lines[0], (
        f"{where}: expected one line naming head.gfl_cls.weight, found {len(lines)}: {lines}"
    )


def test_a4_fine_tuning_with_more_classes_warns_once(finetuned):
    """A4 fine-tuning a 4-class checkpoint with model.num_classes=7: training runs (exit 0) and the console shows ONE line about head.gfl_cls, naming head.gfl_cls.weight."""
    out, run = finetuned
    assert (out / "model_final.pth").exists()
    _one_reinit_line(run.log, "console")


def test_a4_fine_tuning_warning_is_in_the_run_log(finetuned):
    """A4 the same run: its log file (train.output_dir/log.txt) has that ONE line naming head.gfl_cls.weight."""
    out, _ = finetuned
    _one_reinit_line((out / "log.txt").read_text(), str(out / "log.txt"))


# ================================================================ B. configs and overrides
def config_argv(entry: str, overrides: List[str], out, image: str, weights: str, config: str = CONFIG):
    """(script, argv) giving ``entry`` the config file ``config`` and ``overrides``."""
    if entry == "train_net":
        return entry, ["--config-file", config, *overrides]
    if entry == "quickstart":
        return entry, ["--config-file", config, *overrides]
    if entry == "demo":
        return entry, ["--config-file", config, "--input", image, "--output", out / "picture.png", *overrides]
    if entry == "export":
        return entry, ["--config-file", config, "--output", out / "export", *overrides]
    if entry == "convert":
        return entry, [weights, "-o", out / "converted.pth", "--config-file", config, *overrides]
    raise ValueError(entry)


ENTRIES = ["train_net", "quickstart", "demo", "export", "convert"]


@pytest.mark.parametrize("entry", ENTRIES)
def test_b6_misspelt_override_key(entry, tmp_path, image, weights):
    """B6 train.max_itr=10 (misspelt), after an accepted +train.my_key=1: exit 2, the error lists train.max_iter among the closest keys and nothing is written."""
    out = tmp_path / "out"
    overrides = tiny(out) + ["+train.my_key=1", "train.max_itr=10"]
    run = call(*config_argv(entry, overrides, out, image, weights))
    line = one_error(run, "'train.max_itr=10'", "closest existing keys", "train.max_iter")
    assert "+train.my_key=1" not in line, line  # the added key was accepted; the error is the misspelt one
    assert not out.exists() or not any(out.rglob("*.p*")), sorted(map(str, out.rglob("*")))


def test_b6_plus_key_is_accepted(tmp_path, weights):
    """B6 +train.my_key=1 adds a key on purpose: the config has it, and the converter with --config-file runs with it (exit 0)."""
    assert load_config(CONFIG, ["+train.my_key=1"]).train.my_key == 1
    out = tmp_path / "converted.pth"
    run = call(
        "convert", [weights, "-o", out, "--config-file", CONFIG, *tiny(tmp_path, max_iter=None), "+train.my_key=1"]
    )
    assert run.code == 0, run.err[-3000:]
    assert out.exists()


@pytest.fixture(scope="module")
def unready(work):
    """A registered dataset whose files are not generated yet: generated only if something loads it."""
    root = work / "unready"
    register_shapes("badin_unready", ShapesSpec(num_train=6, num_val=2, seed=5), str(root))
    return root


@pytest.mark.parametrize("entry", ENTRIES)
def test_b7_override_value_of_the_wrong_type(entry, tmp_path, image, weights, unready):
    """B7 train.max_iter=abc: exit 2 before anything is built (the not-yet-generated training set stays ungenerated); the error names train.max_iter, its integer value and 'abc'."""
    out = tmp_path / "out"
    overrides = tiny(out, max_iter=None, train_set="badin_unready_train") + ["train.max_iter=abc"]
    run = call(*config_argv(entry, overrides, out, image, weights))
    one_error(run, "train.max_iter", str(CONFIG_MAX_ITER), "abc")
    assert not unready.exists(), "the training set was generated before the override was checked"


@pytest.fixture(scope="module")
def missing_config_runs(tmp_path_factory, image, weights):
    """Every entry point run as a subprocess with a config file that does not exist (and two
    with the traceback switched on)."""
    tmp = tmp_path_factory.mktemp("missing_config")
    missing = str(tmp / "no_such_config.py")
    jobs = {
        entry: config_argv(entry, [], tmp / entry, image, weights, config=missing) + (None, None) for entry in ENTRIES
    }
    name, argv = config_argv("train_net", [], tmp / "debug", image, weights, config=missing)
    jobs["--debug"] = (name, ["--debug"] + argv, None, None)
    name, argv = config_argv("convert", [], tmp / "env", image, weights, config=missing)
    jobs["GFOCAL_DEBUG=1"] = (name, argv, {"GFOCAL_DEBUG": "1"}, None)
    return missing, run_scripts(jobs)


@pytest.mark.parametrize("entry", ENTRIES)
def test_b8_config_file_not_found(entry, missing_config_runs):
    """B8 --config-file that does not exist (each script as a subprocess): exit 2, one line 'config file not found' with the path, no traceback."""
    missing, runs = missing_config_runs
    one_error(runs[entry], "config file not found", missing)


@pytest.mark.parametrize("switch", ["--debug", "GFOCAL_DEBUG=1"])
def test_b8_debug_switch_shows_the_traceback(switch, missing_config_runs):
    """B8 the same mistake with --debug (train_net) or GFOCAL_DEBUG=1 (converter): the traceback is shown, ending in the ConfigError."""
    missing, runs = missing_config_runs
    run = runs[switch]
    assert run.code != 0 and "Traceback" in run.err, run.err[-3000:]
    assert "ConfigError" in run.err and "config file not found" in run.err


@pytest.mark.parametrize("entry", ["train", "eval", "quickstart"])
@pytest.mark.parametrize("setting", ["amp-on-cpu", "cuda-without-gpu"])
def test_b9_device_settings_this_machine_cannot_run(setting, entry, tmp_path, image, weights, monkeypatch):
    """B9 train.amp.enabled=True with train.device=cpu on a CPU without bfloat16 units / train.device=cuda on a machine without CUDA (train, eval, quick start): exit 2, one line saying the CPU has no bfloat16 units / there is no CUDA device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine, whatever runs it
    monkeypatch.setattr(gfocal.engine.train_loop, "cpu_has_bf16", lambda: False)
    name, argv = weights_argv(entry, weights, tmp_path / "out", image)
    if entry == "train":
        argv = [a for a in argv if not a.startswith("train.init_checkpoint")]
    if setting == "amp-on-cpu":
        run = call(name, argv + ["train.device=cpu", "train.amp.enabled=True"])
        line = one_error(run, "train.amp.enabled")
        assert re.search(r"no bfloat16 units", line), line
    else:
        run = call(name, argv + ["train.device=cuda"])
        line = one_error(run, "train.device=cuda")
        assert re.search(r"no CUDA device", line), line
    assert not (tmp_path / "out").exists(), "something was written before the check"


@pytest.mark.parametrize("entry", ["train_net", "quickstart"])
def test_b10_too_few_classes_for_the_data(entry, tmp_path, image, weights):
    """B10 model.num_classes=3 with the 4-class shapes data (train_net, quick start): exit 2 before training, 'set model.num_classes=4'."""
    out = tmp_path / "out"
    run = call(*config_argv(entry, tiny(out) + ["model.num_classes=3"], out, image, weights))
    one_error(run, "set model.num_classes=4")
    assert not (out / "metrics.json").exists() and not list(out.glob("*.pth")), "training started"


def test_b10_more_classes_than_the_data_warns(tmp_path):
    """B10 model.num_classes=6 with the 4-class data (and +train.my_key=1): a warning naming both numbers; training runs (exit 0, model_final.pth)."""
    out = tmp_path / "out"
    run = call("train_net", ["--config-file", CONFIG, *tiny(out, max_iter=1), "model.num_classes=6", "+train.my_key=1"])
    assert run.code == 0, run.err[-3000:]
    assert (out / "model_final.pth").exists()
    warned = [w for w in run.warnings() if "6 classes" in w and "model.num_classes=4" in w]
    assert len(warned) == 1, run.warnings()


# ========================================================================= C. datasets
BAD_BOXES = {  # per reason: (count, words of its table row)
    "non_finite": (2, "non-finite"),
    "non_positive_size": (2, "zero or negative"),
    "outside_image": (1, "entirely outside"),
    "clipped": (1, "partly outside"),
}


@pytest.fixture(scope="module")
def bad_boxes(work):
    """A COCO dataset (4 images 64x64, 10 boxes): 4 valid boxes, a nan box, an inf-width box, a
    zero-width box, a negative-height box, a box entirely outside and one partly outside."""
    inf, nan = float("inf"), float("nan")
    images = [(f"img{i}.jpg", 64, 64, True) for i in range(4)]
    annotations = [
        (0, [8, 8, 20, 20], 0),
        (0, [nan, 10, 20, 20], 1),
        (1, [30, 30, 16, 16], 2),
        (1, [10, 10, inf, 20], 0),
        (2, [5, 5, 30, 30], 3),
        (2, [10, 10, 0, 20], 0),
        (2, [10, 10, 20, -5], 1),
        (3, [20, 20, 10, 10], 1),
        (3, [200, 200, 20, 20], 2),
        (3, [50, 50, 30, 30], 3),
    ]
    json_file, image_root = write_coco(str(work / "bad_boxes"), images, annotations)
    assert "Infinity" in open(json_file).read() and "NaN" in open(json_file).read()
    register_coco("badin_bad_boxes", json_file, image_root)
    return "badin_bad_boxes", json_file, image_root


@pytest.fixture(scope="module")
def bad_boxes_run(bad_boxes, datasets, work):
    """train_net (subprocess) training 1 iteration on the bad-boxes dataset."""
    name, json_file, image_root = bad_boxes
    out = work / "bad_boxes_run"
    spec = dict(datasets, coco=[[name, json_file, image_root]])
    run = run_script("train_net", ["--config-file", CONFIG, *tiny(out, max_iter=1, train_set=name)], datasets=spec)
    assert run.code == 0, run.err[-3000:]
    return out, run


def _one_summary_table(log: str, where: str):
    tables = log.count("Annotation check of dataset")
    assert tables == 1, f"{where}: expected ONE annotation summary table, found {tables}"
    assert re.search(r"10 boxes in 4 images; 5 dropped, 1 clipped", log), f"{where}: wrong totals"
    for reason, (count, words) in BAD_BOXES.items():
        rows = [line for line in log.splitlines() if words in line and line.lstrip().startswith("|")]
        assert len(rows) == 1, f"{where}, {reason}: table rows {rows}"
        cells = [c.strip() for c in rows[0].strip().strip("|").split("|")]
        assert str(count) in cells, f"{reason}: expected {count} boxes in {rows[0]!r}"
    assert "malformed" not in log


def test_c11_bad_boxes_dropped_with_one_summary_table(bad_boxes_run):
    """C11 boxes with nan, inf width, zero width, negative height, entirely / partly outside: training runs (exit 0) and the console shows ONE summary table with the count per reason."""
    _, run = bad_boxes_run
    _one_summary_table(run.log, "console")


def test_c11_summary_table_is_in_the_run_log(bad_boxes_run):
    """C11 the same run: its log file (train.output_dir/log.txt) has that ONE summary table."""
    out, _ = bad_boxes_run
    _one_summary_table((out / "log.txt").read_text(), str(out / "log.txt"))


def test_c11_inf_box_is_dropped_not_clipped(bad_boxes):
    """C11 the [10, 10, inf, 20] box is dropped, never clipped into a valid box; the partly-outside box is clipped to the image."""
    name = bad_boxes[0]
    records = {os.path.basename(r["file_name"]): r for r in checked_dataset_dicts(name)}
    boxes = {k: [list(map(float, a["bbox"])) for a in r["annotations"]] for k, r in records.items()}
    assert boxes["img1.jpg"] == [[30.0, 30.0, 16.0, 16.0]], boxes["img1.jpg"]  # inf box gone
    assert boxes["img0.jpg"] == [[8.0, 8.0, 20.0, 20.0]]
    assert boxes["img2.jpg"] == [[5.0, 5.0, 30.0, 30.0]]
    assert sorted(boxes["img3.jpg"]) == [[20.0, 20.0, 10.0, 10.0], [50.0, 50.0, 14.0, 14.0]]
    assert all(math.isfinite(v) for bs in boxes.values() for b in bs for v in b)


def test_c11_strict_lists_the_reasons(bad_boxes, tmp_path):
    """C11 the same data with dataloader.train.dataset.strict=True: exit 2 before training, the error lists every reason a box was rejected."""
    name = bad_boxes[0]
    out = tmp_path / "out"
    run = call(
        "train_net", ["--config-file", CONFIG, *tiny(out, train_set=name), "dataloader.train.dataset.strict=True"]
    )
    assert run.code == 2 and "Traceback" not in run.err, run.err[-3000:]
    assert run.err.startswith("error:") or "\nerror:" in run.err, run.err
    for reason in ("non_finite", "non_positive_size", "outside_image"):
        assert BAD_BOXES[reason][1] in run.err, f"{reason} not listed:\n{run.err}"
    assert not (out / "metrics.json").exists()


def test_c12_images_missing_on_disk(work, tmp_path):
    """C12 image files named in the json but missing on disk: exit 2 before training, the error gives the count and an example file name."""
    images = [("present.jpg", 64, 64, True), ("gone_a.jpg", 64, 64, False), ("gone_b.jpg", 64, 64, False)]
    annotations = [(i, [8, 8, 20, 20], 0) for i in range(3)]
    json_file, image_root = write_coco(str(work / "missing_images"), images, annotations)
    register_coco("badin_missing_images", json_file, image_root)
    out = tmp_path / "out"
    run = call("train_net", ["--config-file", CONFIG, *tiny(out, train_set="badin_missing_images")])
    line = one_error(run, "2 of 3", "missing")
    assert "gone_a.jpg" in line or "gone_b.jpg" in line, line
    assert not (out / "metrics.json").exists()


def test_c13_training_set_without_annotations(work, tmp_path):
    """C13 a training set with images but no annotations at all: exit 2 before training, 'has no annotations' (not a run ending with AP nan)."""
    images = [(f"img{i}.jpg", 64, 64, True) for i in range(3)]
    json_file, image_root = write_coco(str(work / "no_annotations"), images, [])
    register_coco("badin_no_annotations", json_file, image_root)
    out = tmp_path / "out"
    run = call("train_net", ["--config-file", CONFIG, *tiny(out, train_set="badin_no_annotations")])
    one_error(run, "badin_no_annotations", "has no annotations")
    assert not (out / "metrics.json").exists()


# ===================================================================== D. training faults
def test_d14_nan_loss_is_reported_with_iteration_and_terms(tmp_path, shapes, monkeypatch):
    """D14 the head outputs nan distribution logits from iteration 2: exit 1 with Detectron2's FloatingPointError naming iteration 2 and the loss terms; no 'AssertionError: bad box'."""
    original = GFLHead.forward
    calls = {"train": 0}

    def forward(self, features):
        outputs = original(self, features)
        if self.training:
            calls["train"] += 1
            if calls["train"] >= 3:  # the third training step: iteration 2
                outputs = (outputs[0], [torch.full_like(d, float("nan")) for d in outputs[1]], *outputs[2:])
        return outputs

    monkeypatch.setattr(GFLHead, "forward", forward)
    try:
        run = call("train_net", ["--config-file", CONFIG, *tiny(tmp_path / "out", max_iter=4)])
    except AssertionError as e:  # e.g. fvcore's giou_loss: "bad box: x1 larger than x2"
        pytest.fail(f"a nan loss raised AssertionError instead of FloatingPointError: {e}")
    assert run.code == 1, f"exit {run.code}\n{run.err[-3000:]}"
    assert "Traceback" not in run.err and "bad box" not in run.err, run.err
    assert re.search(r"iteration\W{0,3}2\b", run.err), run.err
    for term in ("loss_qfl", "loss_box", "loss_dfl"):
        assert term in run.err, f"{term} not named:\n{run.err}"


def test_d15_checkpoints_are_written_atomically(trained):
    """D15 after a training run: no '*.tmp*' file is left, and last_checkpoint names the final checkpoint."""
    leftovers = [p.name for p in trained.iterdir() if ".tmp" in p.name]
    assert not leftovers, leftovers
    assert (trained / "last_checkpoint").read_text().strip() == "model_final.pth"
    for name in ("model_0000001.pth", "model_0000003.pth", "model_final.pth"):
        torch.load(trained / name, map_location="cpu", weights_only=True)  # complete files


RESUME = {  # scenario: (what last_checkpoint says, the checkpoint resumed from, iterations run)
    "empty": ("", "model_0000003.pth", [4]),
    "missing": ("model_0000099.pth", "model_0000003.pth", [4]),
    "truncated": ("model_0000003.pth", "model_0000001.pth", [2, 3, 4]),
}
_resumed: Dict[str, tuple] = {}


def resume_run(scenario, trained, work):
    """Copy the trained run without model_final.pth, damage last_checkpoint as ``scenario``
    says, and --resume to max_iter=5 (cached per scenario)."""
    if scenario not in _resumed:
        out = work / f"resume_{scenario}"
        shutil.copytree(trained, out)
        os.remove(out / "model_final.pth")
        for i, name in enumerate(["model_0000001.pth", "model_0000003.pth"]):  # newest: 0000003
            os.utime(out / name, (1_700_000_000 + 100 * i,) * 2)
        content, _, _ = RESUME[scenario]
        (out / "last_checkpoint").write_text(content)
        if scenario == "truncated":
            data = (out / "model_0000003.pth").read_bytes()
            (out / "model_0000003.pth").write_bytes(data[: len(data) // 2])
        before = len((out / "metrics.json").read_text().splitlines())
        run = call("train_net", ["--config-file", CONFIG, "--resume", *tiny(out, max_iter=5)])
        _resumed[scenario] = (out, before, run)
    return _resumed[scenario]


@pytest.mark.parametrize("scenario", list(RESUME))
def test_d15_resume_with_a_damaged_last_checkpoint(scenario, trained, work):
    """D15 --resume when last_checkpoint is empty, names a missing file or a truncated checkpoint: a warning, and training resumes from the newest intact checkpoint (checked in metrics.json) instead of crashing."""
    out, before, run = resume_run(scenario, trained, work)
    assert run.code == 0, run.err[-3000:]
    _, fallback, iterations = RESUME[scenario]
    lines = (out / "metrics.json").read_text().splitlines()[before:]
    resumed = [json.loads(line)["iteration"] for line in lines if "total_loss" in line]
    assert resumed == iterations, f"resumed iterations {resumed}, expected {iterations} (from {fallback})"
    warned = [w for w in run.warnings() if "last_checkpoint" in w and fallback in w]
    assert len(warned) == 1, run.warnings()


def test_d16_read_metrics_keeps_the_last_entry_per_iteration(tmp_path, trained, work):
    """D16 metrics.json with duplicate iterations after a resume: gfocal.analysis.plotting.read_metrics keeps the last entry per iteration."""
    path = tmp_path / "metrics.json"
    rows = [
        {"iteration": 1, "total_loss": 3.0},
        {"iteration": 2, "total_loss": 2.0},
        {"iteration": 2, "total_loss": 9.0},
        {"iteration": 1, "total_loss": 7.0},
        {"iteration": 3, "total_loss": 1.0},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_metrics(str(path))["total_loss"] == [(1, 7.0), (2, 9.0), (3, 1.0)]

    out, _, run = resume_run("truncated", trained, work)  # iterations 2 and 3 logged twice
    assert run.code == 0, run.err[-3000:]
    last = {}
    for line in (out / "metrics.json").read_text().splitlines():
        record = json.loads(line)
        if "total_loss" in record:
            last[record["iteration"]] = record["total_loss"]
    series = read_metrics(str(out / "metrics.json"))["total_loss"]
    assert series == sorted(last.items()), (series, last)


# ================================================================= E. demo and outputs
def demo_argv(inputs, output, weights, *flags):
    args = ["--config-file", CONFIG, "--input", *map(str, inputs)] if inputs else ["--config-file", CONFIG]
    if output is not None:
        args += ["--output", str(output)]
    return args + list(flags) + [*tiny("unused", max_iter=None), f"train.init_checkpoint={weights}"]


def test_e17_same_file_name_in_two_folders(tmp_path, weights):
    """E17 demo inputs a/x.jpg and b/x.jpg: two distinct pictures (the folders mirrored under --output), neither overwritten."""
    write_image(tmp_path / "in" / "a" / "x.jpg", 128, 128, seed=1)
    write_image(tmp_path / "in" / "b" / "x.jpg", 96, 192, seed=2)
    out = tmp_path / "out"
    run = call("demo", demo_argv([tmp_path / "in" / "a" / "x.jpg", tmp_path / "in" / "b" / "x.jpg"], out, weights))
    assert run.code == 0, run.err[-3000:]
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(written) == 2 and len(set(written)) == 2, written
    a, b = (cv2.imread(str(out / w)) for w in written)
    assert {round(a.shape[0] / a.shape[1], 1), round(b.shape[0] / b.shape[1], 1)} == {1.0, 2.0}, (a.shape, b.shape)


@pytest.fixture(scope="module")
def video(work):
    path = work / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
    for k in range(3):
        writer.write(np.full((64, 64, 3), 40 * k, np.uint8))
    writer.release()
    return path


def test_e18_image_output_with_an_unknown_extension(tmp_path, weights, image):
    """E18 one image with --output out.xyz: exit 2, the error names the extension '.xyz'; nothing written."""
    run = call("demo", demo_argv([image], tmp_path / "out.xyz", weights))
    one_error(run, ".xyz")
    assert not (tmp_path / "out.xyz").exists()


def test_e18_existing_file_as_output_for_several_inputs(tmp_path, weights, shapes):
    """E18 several inputs with --output an existing FILE: exit 2, 'needs a folder'; the file is left as it was."""
    target = tmp_path / "existing.png"
    target.write_bytes(b"keep me")
    inputs = [os.path.join(shapes, "val", f) for f in ("000000.jpg", "000001.jpg")]
    run = call("demo", demo_argv(inputs, target, weights))
    line = one_error(run, str(target))
    assert re.search(r"needs? a folder", line), line
    assert target.read_bytes() == b"keep me"


def test_e18_video_output_with_an_unknown_extension(tmp_path, weights, video):
    """E18 --video-input with --output clip.xyz: exit 2, the error names '.xyz'; no 'processed N frames'."""
    run = call("demo", demo_argv(None, tmp_path / "clip.xyz", weights, "--video-input", video))
    one_error(run, ".xyz")
    assert not any("processed" in r.getMessage() for r in run.records)


def test_e18_video_writer_that_cannot_open(weights, video):
    """E18 --video-input with --output where no file can be created (/proc): exit 2, an error naming the output; not 'processed N frames'."""
    target = "/proc/gfocal_bad_inputs_clip.mp4"
    run = call("demo", demo_argv(None, target, weights, "--video-input", video))
    one_error(run, target)
    assert not any("processed" in r.getMessage() for r in run.records)


def test_e19_exif_orientation_is_applied(tmp_path, weights):
    """E19 a JPEG 96 wide x 48 high saved with EXIF Orientation=6 (rotate 90): the demo reads it upright, the picture is twice as high as wide."""
    pixels = np.zeros((48, 96, 3), np.uint8)
    pixels[:, :48] = (200, 60, 60)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif)
    assert Image.open(path).size == (96, 48)
    out = tmp_path / "upright.png"
    run = call("demo", demo_argv([path], out, weights))
    assert run.code == 0, run.err[-3000:]
    picture = cv2.imread(str(out))
    assert picture is not None and abs(picture.shape[0] / picture.shape[1] - 2.0) < 0.05, picture.shape


# ============================================== F. export and command-line arguments, found first
def _no_model_built(monkeypatch):
    """Building a model in the export command fails the test: its checks must come first."""
    import gfocal.export.exporter

    def boom(*args, **kwargs):
        raise AssertionError("the model was built before the arguments were checked")

    monkeypatch.setattr(gfocal.export.exporter, "instantiate", boom)


@pytest.mark.parametrize(
    "case,argv,words",
    [
        ("calib-not-a-number", ["--int8", "--calib-images", "foo"], ["--calib-images 'foo'", "neither"]),
        ("calib-zero", ["--int8", "--calib-images", "0"], ["--calib-images", "at least 1"]),
        ("calib-empty-folder", ["--int8", "--calib-images", "{empty}"], ["--calib-images", "no readable image"]),
        ("calib-no-images", ["--int8", "--calib-images", "{texts}"], ["--calib-images", "no readable image"]),
        ("int8-torch-export", ["--int8", "--format", "torch-export"], ["--int8 needs --format onnx"]),
        ("unknown-format", ["--format", "tflite"], ["--format", "'tflite'"]),
        ("output-is-a-file", ["--output", "{file}"], ["--output", "is a file"]),
        ("missing-weights", ["train.init_checkpoint={missing}"], ["no such file", "missing.pth"]),
    ],
)
def test_f21_export_mistakes_are_found_before_any_work(case, argv, words, tmp_path, weights, monkeypatch):
    """F21 export: --calib-images foo / 0 / an empty folder / a folder without images, --int8 with torch-export, an unknown --format, --output naming a file, missing weights: exit 2, one line naming the argument, before the model is built; the output folder is not created."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("not an image")
    (tmp_path / "file").write_text("a file")
    fill = {
        "empty": tmp_path / "empty",
        "texts": tmp_path / "texts",
        "file": tmp_path / "file",
        "missing": tmp_path / "missing.pth",
    }
    argv = [a.format(**fill) for a in argv]
    _no_model_built(monkeypatch)
    out = tmp_path / "export"
    flags, overrides = [a for a in argv if "=" not in a], [a for a in argv if "=" in a]
    overrides = [*tiny(tmp_path / "train"), f"train.init_checkpoint={weights}", *overrides]
    run = call("export", ["--config-file", CONFIG, "--output", out, *flags, *overrides])
    one_error(run, *words)
    assert not out.exists()


def test_f21_failed_export_leaves_nothing_behind(tmp_path, weights, monkeypatch):
    """F21 an export that fails half-way (the ONNX writer dies after writing part of a file): exit 2, the output folder gets no file and no temporary folder is left beside it."""
    import gfocal.export.exporter
    from gfocal.errors import GFocalError

    def dies(module, path, opset=18):
        with open(path, "wb") as f:
            f.write(b"half a model")
        raise GFocalError("the ONNX writer died")

    monkeypatch.setattr(gfocal.export.exporter, "export_onnx", dies)
    out = tmp_path / "export"
    out.mkdir()
    run = call(
        "export", ["--config-file", CONFIG, "--output", out, *tiny(tmp_path / "t"), f"train.init_checkpoint={weights}"]
    )
    one_error(run, "the ONNX writer died")
    assert os.listdir(out) == [] and os.listdir(tmp_path) == ["export"]


def test_f22_int8_export_is_quiet_and_demo_says_why_no_distributions(tmp_path, weights, image):
    """F22 --int8 (a tiny model, 2 calibration images) prints no onnxruntime advice and leaves the root logger as it was; the demo's --show-distributions on an export without distributions says why, once, and draws the boxes."""
    out = tmp_path / "int8"
    root_handlers = list(logging.getLogger().handlers)
    run = call(
        "export",
        [
            "--config-file",
            CONFIG,
            "--output",
            out,
            "--int8",
            "--calib-images",
            "2",
            *tiny(tmp_path / "t"),
            f"train.init_checkpoint={weights}",
        ],
    )
    assert run.code == 0, run.err[-3000:]
    assert "pre-processing" not in run.log and logging.getLogger().handlers == root_handlers
    assert sorted(os.listdir(out)) == ["model.json", "model.onnx"]
    demo = call("demo", ["--exported", out, "--input", image, "--output", tmp_path / "pic.png", "--show-distributions"])
    assert demo.code == 0, demo.err[-3000:]
    said = [w for w in demo.warnings() if "without distributions" in w]
    assert len(said) == 1 and "--with-distributions" in said[0], demo.log
    assert cv2.imread(str(tmp_path / "pic.png")) is not None


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_f23_unknown_argument_is_one_line(name, tmp_path):
    """F23 an unknown flag (--no-such-flag) to every command: exit 2, one 'error:' line naming it and pointing to --help, no usage text."""
    argv = {
        "convert": ["x.pth", "-o", tmp_path / "y.pth"],
        "plot_metrics": [tmp_path / "metrics.json"],
        "export": ["--config-file", CONFIG, "--output", tmp_path / "out"],
    }.get(name, [])
    run = call(name, [*argv, "--no-such-flag"])
    one_error(run, "--no-such-flag", "--help")
    assert "usage:" not in run.err


@pytest.mark.parametrize(
    "name,argv,words",
    [
        (
            "demo",
            ["--input", "x.jpg", "--backend", "onnxruntime", "--config-file", CONFIG],
            ["--backend", "--exported"],
        ),
        (
            "demo",
            ["--input", "x.jpg", "--confidence-threshold", "2", "--config-file", CONFIG],
            ["--confidence-threshold", "[0, 1]"],
        ),
        ("quickstart", ["--pictures", "0"], ["--pictures", "at least 1"]),
        ("benchmark", ["--amp"], ["--amp needs --device cuda"]),
        ("benchmark", ["--height", "0"], ["--height"]),
        ("benchmark_quickstart", ["train.max_itr=1"], ["train.max_itr", "closest existing keys"]),
        ("plot_metrics", ["{missing}"], ["no such file"]),
        ("convert", ["{weights}", "-o", "{folder}"], ["is a folder"]),
        ("demo", ["--input", "x.jpg", "--slice", "0", "--config-file", CONFIG], ["--slice", "positive integer"]),
        ("demo", ["--input", "x.jpg", "--overlap", "0.3", "--config-file", CONFIG], ["--overlap", "give --slice"]),
        (
            "demo",
            ["--input", "x.jpg", "--slice", "256", "--overlap", "1", "--config-file", CONFIG],
            ["overlap must be a number in [0, 1)"],
        ),
        ("demo", ["--input", "x.jpg", "--slice", "256", "--merge", "wbf", "--config-file", CONFIG], ["nms, greedy"]),
        ("benchmark_small_objects", ["--images", "-1"], ["--images"]),
        ("benchmark_small_objects", ["--size", "0"], ["--size", "positive integer"]),
        ("benchmark_small_objects", ["--weights", "{missing}"], ["--weights", "no such file"]),
    ],
)
def test_f23_command_argument_mistakes(name, argv, words, tmp_path, weights):
    """F23 other argument mistakes (demo --backend without --exported, a threshold outside [0, 1], quickstart --pictures 0, benchmark --amp on the CPU or --height 0, benchmark_quickstart with a misspelt override, plot_metrics on a missing file, convert -o naming a folder, demo --slice 0 / --overlap without --slice / --overlap 1 / --merge wbf, benchmark_small_objects --images -1 / --size 0 / missing --weights): exit 2, one line naming the argument, nothing written."""
    fill = {"missing": tmp_path / "metrics.json", "weights": weights, "folder": tmp_path}
    before = sorted(os.listdir(tmp_path))
    run = call(name, [a.format(**fill) if isinstance(a, str) else a for a in argv])
    one_error(run, *words)
    assert sorted(os.listdir(tmp_path)) == before
