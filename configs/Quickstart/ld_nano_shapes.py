"""LD (main region) of GFocal-Nano (configs/Quickstart/gfl_nano_shapes.py) under the quick-start
model (`make quickstart` trains it): the teacher's p3-p6 outputs teach the nano's four levels,
its distributions over 0..16 folded onto the nano's 0..7 (gfocal.modeling.fold_distribution).
The teacher's forward pass makes each step slower; tools/benchmark.py --mode frontier gives the
student the same wall time as the nano model alone (contender nano_ld)."""

from ..common.ld import ld
from .gfl_nano_shapes import dataloader, export, lr_multiplier, model, optimizer, train

# The LD weight scaled to 16 images per worker (0.25 / 8): at the published 0.25 the LD sum over
# 16 images outweighed the class loss in the nano's shared tower. Neither pays at equal wall time
# (projects/GFocal/README.md, "Against YOLO at equal training time").
distill = ld("Quickstart/gfl_shapes.py", "./output/quickstart/gfl/model_final.pth", images_per_worker=16)
train.output_dir = "./output/quickstart/gfl_nano_ld"
