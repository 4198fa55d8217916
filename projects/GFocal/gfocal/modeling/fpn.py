"""FPN top block of the GFL reference: P6 from the P5 output, P7 from P6 with no ReLU between."""

from typing import List

import fvcore.nn.weight_init as weight_init
from torch import Tensor, nn

__all__ = ["LastLevelP6P7NoReLU"]


class LastLevelP6P7NoReLU(nn.Module):
    """P6 = conv3x3/s2(P5 output), P7 = conv3x3/s2(P6).

    Detectron2's ``LastLevelP6P7`` applies a ReLU to P6 before computing P7; mmdetection's FPN
    with ``add_extra_convs="on_output"`` (used by every published GFL model) does not, so
    official weights need this block to reproduce their outputs.
    """

    def __init__(self, in_channels: int, out_channels: int, in_feature: str = "p5"):
        super().__init__()
        self.num_levels = 2
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for module in [self.p6, self.p7]:
            weight_init.c2_xavier_fill(module)

    def forward(self, x: Tensor) -> List[Tensor]:
        """x: (N, C, H, W) -> [P6 (N, C', H/2, W/2), P7 (N, C', H/4, W/4)] (rounded up)."""
        p6 = self.p6(x)
        return [p6, self.p7(p6)]
