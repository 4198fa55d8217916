"""Training and evaluation loops for lazy configs (Detectron2's lazyconfig_train_net, importable).

``train_net.py`` is the command line around these; ``tools/quickstart.py`` reuses them.
"""

import copy
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import torch
from omegaconf import DictConfig, ListConfig

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..checkpoint import GFLCheckpointer, load_for_inference, require_weights
from ..data import check_num_classes
from ..errors import CheckpointError, ConfigError, GFocalError
from ..modeling.optimize import optimize_for_inference
from ..modeling.slicing import GFLWithSlicing, slicing_settings
from ..modeling.timm_backbone import TimmBackbone
from ..modeling.tta import GFLWithTTA, check_tta_settings
from .ema import EMAHook, ModelEMA, ema_settings
from .precision import build_trainer, cpu_has_bf16, describe_precision, uses_channels_last
from .predictor import evaluation_input
from .stages import last_stage_hook

__all__ = [
    "TrainingRun",
    "check_device",
    "check_inputs",
    "do_test",
    "do_train",
    "evaluate_checkpoint",
    "run_trainings",
    "train_unless_finished",
]

logger = logging.getLogger("detectron2")


def do_test(cfg, model):
    """Run the config's test loader through its evaluator; returns the metrics dict. With
    ``dataloader.test.slicing.enabled`` the model runs sliced (:mod:`gfocal.modeling.slicing`)."""
    if "evaluator" not in cfg.dataloader:
        return {}
    # ``slicing`` sits beside the loader's arguments (as ``dataloader.tta`` beside the loader).
    loader = copy.deepcopy(cfg.dataloader.test)
    loader.pop("slicing", None)
    slicing = _test_slicing(cfg)
    if slicing is not None:
        model = GFLWithSlicing(getattr(model, "module", model), evaluation_input(cfg)[1], slicing)
        loader.mapper.augmentations = []  # the wrapper resizes each tile and the whole image itself
        logger.info(f"Sliced inference: {slicing}")
    results = inference_on_dataset(model, instantiate(loader), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def do_train(cfg, resume: bool = False):
    """Train ``cfg.model`` with the config's data, optimizer and schedule; evaluate at
    ``train.eval_period`` (0: once, at the end). With ``resume``, continue from the last
    checkpoint in ``train.output_dir`` when there is one.

    Returns:
        the trainer (its ``storage`` holds the latest metrics).
    """
    check_device(cfg)
    # The data first: its checks (annotations, files, classes) run before anything is built.
    train_loader = instantiate(cfg.dataloader.train)
    check_num_classes(cfg.dataloader.train.dataset.names, cfg.model.num_classes)
    model = instantiate(cfg.model)
    if "distill" in cfg:  # a frozen teacher (Localization Distillation), never a submodule
        model.set_distiller(instantiate(cfg.distill))
    logger.info("Model:\n{}".format(model))
    device, amp = str(cfg.train.device), cfg.train.amp.enabled
    model.to(device)
    if uses_channels_last(device):
        model.to(memory_format=torch.channels_last)
    logger.info(f"Training on {device} in {describe_precision(device, amp)}")

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)

    ddp = dict(cfg.train.ddp)
    if not device.startswith("cuda"):
        ddp.setdefault("device_ids", None)  # Detectron2 passes the local GPU, which a CPU model refuses
    model = create_ddp_model(model, **ddp)
    trainer = build_trainer(model, train_loader, optim, device, amp)
    settings = ema_settings(cfg)
    ema = ModelEMA(model, settings["decay"], settings["warmup"]) if settings["enabled"] else None
    checkpointer = GFLCheckpointer(model, cfg.train.output_dir, trainer=trainer, **({"ema": ema} if ema else {}))
    evaluated = ema.module if ema else model  # evaluation during training: the average when there is one
    main = comm.is_main_process()
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            EMAHook(ema) if ema else None,  # before the checkpointer and evaluation, which read it
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            last_stage_hook(cfg),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, evaluated)),
            hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), cfg.train.log_period)
            if main
            else None,
        ]
    )

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    if ema and not ema.restored:  # fine-tuning, a fresh start, or a checkpoint saved without EMA
        ema.reset(model)
    # The checkpoint stores the iteration that just finished; start at the next one.
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


def evaluate_checkpoint(cfg, weights: str, optimize: bool = True):
    """Build ``cfg.model``, load ``weights`` and evaluate it on the config's test set.

    Args:
        optimize: evaluate the inference-optimised copy (:mod:`gfocal.modeling.optimize`; outputs equal
            to float rounding) instead of the model as built.
    """
    require_weights(weights)
    check_device(cfg)
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    load_for_inference(model, weights, cfg)
    if optimize:
        model = optimize_for_inference(model)
    tta = cfg.dataloader.get("tta", {})
    if tta.get("enabled", False):
        model = GFLWithTTA(model, min_sizes=list(tta.min_sizes), max_size=tta.max_size, flip=tta.flip)
        logger.info(f"Test-time augmentation: {model.views} (short side, flipped), max size {model.max_size}")
    # No DDP wrapper: inference needs no gradient sync (each rank evaluates its shard and the
    # evaluator gathers), and DDP refuses a model without trainable parameters.
    with torch.inference_mode():
        return do_test(cfg, model)


def _test_slicing(cfg):
    """The checked ``dataloader.test.slicing`` (None when off); not together with ``dataloader.tta``."""
    slicing = slicing_settings(cfg.dataloader.test.get("slicing", None))
    if slicing is not None and cfg.dataloader.get("tta", {}).get("enabled", False):
        raise ConfigError(
            "dataloader.test.slicing and dataloader.tta are both enabled: evaluate with one of them "
            "(dataloader.tta.enabled=False or dataloader.test.slicing.enabled=False)"
        )
    return slicing


def check_device(cfg) -> None:
    """``train.device``, ``train.amp.enabled`` and ``train.ema`` must be usable on this machine."""
    device = str(cfg.train.get("device", "cuda"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device} but this machine has no CUDA device: set train.device=cpu")
    amp = cfg.train.get("amp", {}).get("enabled", False)
    if amp and device.startswith("cpu") and not cpu_has_bf16():
        raise ConfigError(
            "train.amp.enabled=True on the CPU trains in bfloat16, but this CPU has no bfloat16 units "
            "(AVX512-BF16 or AMX; emulated it is slower than float32): set train.amp.enabled=False"
        )
    if amp and not device.startswith(("cpu", "cuda")):
        raise ConfigError(f"train.amp.enabled=True: mixed precision runs on cpu or cuda, not train.device={device}")
    settings = ema_settings(cfg)
    if not 0.0 <= settings["decay"] < 1.0 or settings["warmup"] <= 0:
        raise ConfigError(
            f"train.ema: decay must be in [0, 1) and warmup > 0 (updates), got decay={settings['decay']}, "
            f"warmup={settings['warmup']}"
        )


def _check_timm_backbones(node) -> None:
    """:meth:`TimmBackbone.check_settings` of every TimmBackbone in a model config (a wrong timm
    name or index then fails before the output folder is written)."""
    if isinstance(node, DictConfig):
        target = node.get("_target_", None)
        if target is TimmBackbone or target == f"{TimmBackbone.__module__}.{TimmBackbone.__name__}":
            TimmBackbone.check_settings(
                node.model_name,
                node.get("out_indices", (2, 3, 4)),
                node.get("pretrained", False),
                node.get("checkpoint_path", None),
            )
        children = node.values()
    elif isinstance(node, ListConfig):
        children = node
    else:
        return
    for child in children:
        _check_timm_backbones(child)


def check_inputs(cfg, eval_only: bool = False, processes: int = 1) -> None:
    """What a run reads from outside, checked before anything is built or written: the device
    (for ``processes`` workers in all), the sliced evaluation's settings, and for ``--eval-only``
    the weights and the test-time augmentation, else the last stage's augmentation settings and a
    distillation config's teacher weights."""
    check_device(cfg)
    _test_slicing(cfg)
    _check_timm_backbones(cfg.model)
    device = str(cfg.train.get("device", "cuda"))
    if processes > 1 and device.startswith("cpu") and torch.cuda.is_available():
        raise ConfigError(
            f"train.device={device} with {processes} processes on a machine with CUDA: Detectron2's "
            "launcher then picks NCCL, which needs GPU tensors; train on the GPUs (train.device=cuda), or "
            "hide them (CUDA_VISIBLE_DEVICES=) to train on the CPU over gloo"
        )
    if eval_only:
        require_weights(cfg.train.init_checkpoint)
        tta = cfg.dataloader.get("tta", {})
        if tta.get("enabled", False):
            check_tta_settings(list(tta.min_sizes), tta.max_size)
        return
    last_stage_hook(cfg)  # dataloader.train_last's settings
    weights = cfg.get("distill", {}).get("teacher", {}).get("weights", None)
    if weights is not None and "://" not in weights and not os.path.isfile(weights):
        raise CheckpointError(
            f"distill.teacher.weights: no such file {weights!r} (train that model first; the built-in "
            "data's teacher is the quick-start model: make quickstart)"
        )


def run_trainings(todo, jobs: int, poll_s: float = 2.0, cwd: Optional[str] = None, progress=None) -> None:
    """Run the training commands of ``todo`` ((label, argv, output dir) each), ``jobs`` at a time,
    each with ``cpu_count // jobs`` threads: small models use two cores poorly, so two one-thread
    trainings on two cores finish sooner than the same two run one after the other. With
    more than one job each run's console goes to ``<output dir>/console.txt``. Every run is let
    finish; then one GFocalError names each failed run. ``progress`` (if given) is called after
    every poll with the output dirs of the runs still going."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    pending, running, failed = list(todo), [], []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                label, argv, out = pending.pop(0)
                os.makedirs(out, exist_ok=True)
                console = open(os.path.join(out, "console.txt"), "a") if jobs > 1 else None
                where = f" (console: {out}/console.txt)" if console else ""
                print(f"== {label}: {' '.join(argv[1:])}{where}", flush=True)
                proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=console, stderr=subprocess.STDOUT)
                running.append((label, out, console, proc))
            time.sleep(poll_s if running else 0)
            if progress is not None:
                progress([r[1] for r in running])
            for item in [r for r in running if r[3].poll() is not None]:
                running.remove(item)
                label, out, console, proc = item
                if console:
                    console.close()
                if proc.returncode != 0:
                    failed.append(f"{label} (exit {proc.returncode}; output in {out})")
                print(f"== {label}: {'failed' if proc.returncode else 'done'}", flush=True)
    finally:
        for _, _, console, proc in running:  # interrupted: stop the other trainings too
            proc.terminate()
            proc.wait()
            if console:
                console.close()
    if failed:
        raise GFocalError(f"training failed: {'; '.join(failed)} (see above; a rerun resumes)")


@dataclass
class TrainingRun:
    """One ``train_net.py`` run for :func:`train_unless_finished`.

    Attributes:
        label: the run's name in the console.
        output_dir: where the run writes (its ``train.output_dir``): done once it holds ``model_final.pth``.
        config: a config file path, or a lazy config (saved to ``<output_dir>/run_config.yaml``).
        overrides: ``key=value`` overrides, last on the command line.
        args: more ``train_net.py`` arguments (e.g. ``--num-gpus 2``), before the overrides.
    """

    label: str
    output_dir: str
    config: Any
    overrides: Sequence[str] = ()
    args: Sequence[str] = ()


def train_unless_finished(
    runs: Sequence[TrainingRun], train_net: str, jobs: int = 1, cwd=None, progress=None
) -> List[str]:
    """Train each of ``runs`` that has no ``model_final.pth`` yet with ``train_net --resume`` (a killed
    run continues from its last checkpoint), through :func:`run_trainings` (``jobs``, ``cwd`` and
    ``progress`` as there).

    Returns:
        ``<output_dir>/model_final.pth`` of every run, in order.

    Raises:
        ConfigError: a lazy config that cannot be saved as yaml (a lambda or object in it).
    """
    todo = []
    for run in runs:
        if os.path.isfile(os.path.join(run.output_dir, "model_final.pth")):
            continue
        config = run.config
        if not isinstance(config, (str, os.PathLike)):
            os.makedirs(run.output_dir, exist_ok=True)
            config = os.path.join(run.output_dir, "run_config.yaml")
            if os.path.isfile(config + ".pkl"):
                os.remove(config + ".pkl")
            LazyConfig.save(run.config, config)
            if os.path.isfile(config + ".pkl") or not os.path.isfile(config):
                raise ConfigError(f"{run.label}: its config cannot be saved as yaml (a lambda or object in it?)")
        argv = [sys.executable, train_net, "--resume", "--config-file", str(config), *run.args, *run.overrides]
        todo.append((run.label, argv, run.output_dir))
    if todo:
        run_trainings(todo, jobs, cwd=cwd, progress=progress)
    return [os.path.join(run.output_dir, "model_final.pth") for run in runs]
