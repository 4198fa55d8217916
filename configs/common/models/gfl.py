"""GFL v1 on ResNet-50 + FPN (P3-P7), as the reference: torchvision-style ResNet (stride in the
3x3 conv, RGB input), FPN with P6 from the P5 output and no ReLU before P7, ATSS matching."""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import FPN, BasicStem, ResNet

from gfocal.modeling import GFL, ATSSMatcher, GFLHead, LastLevelP6P7NoReLU, make_resnet_stages

model = L(GFL)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            # ResNeXt: num_groups / width_per_group; DCN: deform_on_stages / deform_modulated.
            stages=L(make_resnet_stages)(
                depth=50,
                stride_in_1x1=False,
                norm="FrozenBN",
                num_groups=1,
                width_per_group=64,
                deform_on_stages=[],
                deform_modulated=False,
            ),
            out_features=["res3", "res4", "res5"],
            freeze_at=2,
        ),
        in_features=["res3", "res4", "res5"],
        out_channels=256,
        top_block=L(LastLevelP6P7NoReLU)(
            in_channels="${..out_channels}", out_channels="${..out_channels}", in_feature="p5"
        ),
    ),
    head=L(GFLHead)(
        input_shape=[ShapeSpec(channels=256)] * 5,
        num_classes="${..num_classes}",
        conv_dims=[256, 256, 256, 256],
        norm="GN",
        reg_max=16,
        prior_prob=0.01,
        use_dgqp=False,
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    # One square anchor of side 8 x stride per location, centred on the location (offset 0).
    anchor_generator=L(DefaultAnchorGenerator)(
        sizes=[[8 * s] for s in (8, 16, 32, 64, 128)],
        aspect_ratios=[1.0],
        strides=[8, 16, 32, 64, 128],
        offset=0.0,
    ),
    anchor_matcher=L(ATSSMatcher)(topk=9),
    num_classes=80,
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
)
