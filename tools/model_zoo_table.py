#!/usr/bin/env python
"""Generate the model-zoo table of projects/GFocal/README.md from the configs,
gfocal.model_zoo.MODELS (official checkpoints) and gfocal.model_zoo.DISTILLED (LD students).

    python tools/model_zoo_table.py            # print the table
    python tools/model_zoo_table.py --write    # replace it in projects/GFocal/README.md
    python tools/model_zoo_table.py --check    # exit 1 if the README's table is stale
"""

import argparse
import os
import sys

from detectron2.config import LazyConfig

from gfocal.cli import checked_parser, run
from gfocal.errors import ConfigError
from gfocal.model_zoo import DISTILLED, MODELS, get_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "projects/GFocal/README.md")
BEGIN, END = "<!-- model-zoo-table:begin -->", "<!-- model-zoo-table:end -->"


def describe(name: str):
    """(GFL version, backbone, schedule) of a config; for an LD student, the version names its teacher."""
    cfg = LazyConfig.load(get_config_file(name))
    stages = cfg.model.backbone.bottom_up.stages
    depth, groups = stages.depth, stages.get("num_groups", 1)
    backbone = f"X-{depth}-{groups}x{stages.width_per_group}d" if groups > 1 else f"R-{depth}"
    dcn = list(stages.get("deform_on_stages", []))
    if dcn:
        backbone += f" DCN c{dcn[0][-1]}-c{dcn[-1][-1]}"
    version = "v2" if cfg.model.head.use_dgqp else "v1"
    if "distill" in cfg:
        teacher = os.path.splitext(os.path.basename(cfg.distill.teacher.config_file))[0]
        version += f", LD student of `{teacher}`"
    sizes = cfg.dataloader.train.mapper.augmentations[0].short_edge_length
    scale = f"{sizes[0]}-{sizes[1]}" if hasattr(sizes, "__len__") else f"{sizes}"
    return version, backbone, {90000: "1x", 180000: "2x"}[cfg.train.max_iter] + f", {scale}"


def table() -> str:
    rows = [
        "| config | GFL | backbone | schedule (iters, train short side) | reference box AP | official checkpoint |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in MODELS.items():
        version, backbone, schedule = describe(name)
        ckpt = f"[{entry.checkpoint}]({entry.url or entry.page})"
        rows.append(
            f"| `{name}` | {version} | {backbone} | {schedule} | {entry.reference_ap} ({entry.source}) | {ckpt} |"
        )
    for name, entry in DISTILLED.items():
        version, backbone, schedule = describe(name)
        ap = f"{entry.student_ap} alone -> {entry.ld_ap} LD"
        if entry.full_recipe_ap is not None:
            ap += f", {entry.full_recipe_ap} full recipe"
        rows.append(f"| `{name}` | {version} | {backbone} | {schedule} | {ap} ({entry.source}) | none published |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true")
    group.add_argument("--check", action="store_true")
    args = checked_parser(parser).parse_args(argv)
    text = table()
    if not (args.write or args.check):
        print(text)
        return 0
    with open(README) as f:
        readme = f.read()
    if BEGIN not in readme or END not in readme:
        raise ConfigError(f"{README} lacks the {BEGIN} / {END} markers")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    updated = f"{head}{BEGIN}\n{text}\n{END}{tail}"
    if args.check:
        if updated != readme:
            print("projects/GFocal/README.md model-zoo table is stale: run tools/model_zoo_table.py --write")
            return 1
        return 0
    with open(README, "w") as f:
        f.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
