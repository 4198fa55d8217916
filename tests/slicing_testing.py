"""A drawn large image and an oracle detector for the sliced-inference tests.

The oracle is a GFL in name only: it finds the white rectangles of a view by thresholding (what a
perfect detector would see in that view), so every difference between the merges and views is
the slicing's own. Like a real detector it clips boxes to its view (an object cut by a tile's
border gets a truncated box there), misses objects under ``min_area`` input pixels (a 6 px
square in a whole image shrunk 3x), and its side distributions are one bin wide in the view's
input pixels, so a view that was shrunk has proportionally blurrier sides in the original.
"""

from typing import Dict, List

import cv2
import numpy as np
import torch
from torch import nn

from detectron2.structures import Boxes, Instances

from gfocal.modeling import GFL

REG_MAX = 16


class OracleGFL(GFL):
    def __init__(self, min_area: int = 12, channel=None):
        """``channel``: look at one channel of the model's input only (None: their mean)."""
        nn.Module.__init__(self)
        self.channel = channel
        self._dummy = nn.Parameter(torch.zeros(1))
        self.test_nms_thresh, self.max_detections_per_image = 0.6, 100
        self.min_area = min_area
        self.batch_sizes: List[int] = []

    def forward(self, batched_inputs: List[Dict]):
        self.batch_sizes.append(len(batched_inputs))
        return [{"instances": self._detect(x)} for x in batched_inputs]

    def _detect(self, x: Dict) -> Instances:
        image = x["image"].float()
        in_h, in_w = image.shape[-2:]
        out_h, out_w = int(x.get("height", in_h)), int(x.get("width", in_w))
        plane = image.mean(0) if self.channel is None else image[self.channel]
        mask = (plane > 127).numpy().astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
        stats = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= self.min_area]
        boxes = stats[:, :4].astype(np.float32).copy()
        boxes[:, 2:] += boxes[:, :2]  # XYWH -> XYXY in the view's input pixels
        scale = np.array([out_w / in_w, out_h / in_h] * 2, np.float32)
        m = len(boxes)
        dists = torch.zeros(m, 4, REG_MAX + 1)
        dists[..., 7:10] = torch.tensor([0.25, 0.5, 0.25])  # one bin of spread, in input pixels
        inst = Instances((out_h, out_w))
        inst.pred_boxes = Boxes(torch.as_tensor(boxes * scale).reshape(-1, 4))
        # A larger visible area scores higher, as a real detector is surer of a whole object.
        inst.scores = torch.as_tensor(np.minimum(0.3 + stats[:, 4] / 2000.0, 0.99), dtype=torch.float32)
        inst.pred_classes = torch.zeros(m, dtype=torch.int64)
        inst.pred_dists = dists
        inst.pred_strides = torch.full((m,), float(np.sqrt(scale[0] * scale[1])))
        return inst


def drawn_large_image():
    """A (768, 1024, 3) uint8 black image with white rectangles, and their (N, 4) XYXY boxes
    (end-exclusive: a box [x0, y0, x1, y1] covers pixels x0..x1-1): tiny 6-8 px squares, some on
    the default grid's inner borders (x = 192, 256; y = 192, 256), medium ones, and objects wider
    than the 64 px overlap across a border (no tile sees them whole)."""
    boxes = np.array(
        [
            [40, 40, 46, 46],
            [600, 100, 607, 107],
            [900, 700, 908, 708],
            [300, 500, 306, 506],
            [252, 60, 259, 67],  # tiny, across x = 256
            [60, 252, 67, 259],  # tiny, across y = 256
            [100, 400, 130, 425],
            [700, 300, 740, 330],
            [150, 600, 290, 640],  # 140 px wide across x = 192 and 256
            [500, 150, 540, 290],  # 140 px tall across y = 192 and 256
            [380, 380, 460, 460],  # across x = 384, 448 and y = 384, 448
        ],
        np.int64,
    )
    image = np.zeros((768, 1024, 3), np.uint8)
    for x0, y0, x1, y1 in boxes:
        image[y0:y1, x0:x1] = 255
    return image, boxes.astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of XYXY boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(-1), (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter)
