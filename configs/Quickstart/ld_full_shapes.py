"""The full LD recipe on the built-in data (main region, valuable localization region, class
KD): the student of gfl_shapes_student.py under the quick-start model."""

from ..common.ld import ld
from .gfl_shapes_student import dataloader, lr_multiplier, model, optimizer, train

distill = ld("Quickstart/gfl_shapes.py", "./output/quickstart/gfl/model_final.pth", full_recipe=True)
train.output_dir = "./output/quickstart/student_ld_full"
