"""LD (main region) on the built-in data: the student of gfl_shapes_student.py under the
quick-start model (`make quickstart` trains it)."""

from ..common.ld import ld
from .gfl_shapes_student import dataloader, lr_multiplier, model, optimizer, train

distill = ld("Quickstart/gfl_shapes.py", "./output/quickstart/gfl/model_final.pth")
train.output_dir = "./output/quickstart/student_ld"
