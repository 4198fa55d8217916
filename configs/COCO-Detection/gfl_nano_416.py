"""GFocal-Nano (LCNet 0.75x + light PAN + light GFL head, reg_max 7), 416 x 416 input, COCO 2017,
300 epochs: configs/common/models/gfl_nano.py with configs/common/coco_nano.py. No ImageNet
backbone by default (model.backbone.bottom_up.pretrained=True fetches timm's)."""

from ..common.coco_nano import dataloader, lr_multiplier, nano_input_size, optimizer, train
from ..common.models.gfl_nano import export, model

nano_input_size(dataloader, 416)
train.output_dir = "./output/gfl_nano_416"
