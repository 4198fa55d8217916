"""Training and evaluation loops for lazy configs (Detectron2's lazyconfig_train_net, importable).

``train_net.py`` is the command line around these; ``tools/quickstart.py`` reuses them.
"""
import logging
import os

from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from .checkpoint import GFLCheckpointer

__all__ = ["do_test", "do_train", "evaluate_checkpoint"]

logger = logging.getLogger("detectron2")


def do_test(cfg, model):
    """Run the config's test loader through its evaluator; returns the metrics dict."""
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
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
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optim)
    checkpointer = GFLCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
            if comm.is_main_process()
            else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter),
                period=cfg.train.log_period,
            )
            if comm.is_main_process()
            else None,
        ]
    )

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    if resume and checkpointer.has_checkpoint():
        # The checkpoint stores the iteration that just finished; start at the next one.
        start_iter = trainer.iter + 1
    else:
        start_iter = 0
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


def evaluate_checkpoint(cfg, weights: str):
    """Build ``cfg.model``, load ``weights`` and evaluate it on the config's test set."""
    if not weights:
        raise ValueError("evaluation needs weights: pass train.init_checkpoint=PATH")
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"train.init_checkpoint: no such file {weights!r}")
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    model = create_ddp_model(model)
    GFLCheckpointer(model).load(weights)
    return do_test(cfg, model)
