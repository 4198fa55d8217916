"""GFocal-Nano: a GFL for CPUs and edge devices. A timm LCNet 0.75x (strides 8-32, no weights
unless asked) under a 96-channel depthwise-separable PAN with a stride-64 level, and a head of
two 5x5 depthwise-separable convs per level read by both the class and the box predictions,
with side distributions over 0..7 (reg_max 7: the coarsest level reaches 7 x 64 = 448 px from a
location). ATSS, the losses and inference are the reference GFL's.

Pretrained backbone (needs network, or a local file): model.backbone.bottom_up.pretrained=True
[model.backbone.bottom_up.checkpoint_path=FILE].
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

from gfocal.modeling import GFL, ATSSMatcher, LightGFLHead, LightPAN, TimmBackbone

STRIDES = (8, 16, 32, 64)

model = L(GFL)(
    backbone=L(LightPAN)(
        bottom_up=L(TimmBackbone)(model_name="lcnet_075", out_indices=(2, 3, 4), pretrained=False),
        in_features=["res3", "res4", "res5"],
        out_channels=96,
        kernel_size=5,
        num_extra_levels=1,
        activation="leaky_relu",
    ),
    head=L(LightGFLHead)(
        input_shape=[ShapeSpec(channels=96)] * len(STRIDES),
        num_classes="${..num_classes}",
        conv_dims=[96, 96],
        kernel_size=5,
        reg_max=7,
        activation="leaky_relu",
        use_dgqp=False,
    ),
    head_in_features=[f"p{s.bit_length() - 1}" for s in STRIDES],
    anchor_generator=L(DefaultAnchorGenerator)(
        sizes=[[8 * s] for s in STRIDES], aspect_ratios=[1.0], strides=list(STRIDES), offset=0.0
    ),
    anchor_matcher=L(ATSSMatcher)(topk=9),
    num_classes=80,
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
)

# int8 export (`tools/export_model.py --int8`, gfocal.export.quantize): the stem, the depthwise
# convs and the head's output convs stay float and activations are calibrated to their 99.999th
# percentile; min-max int8 of every conv lost up to 11 val AP on this model (projects/GFocal/README.md).
export = dict(
    int8=dict(
        float_stem=True,
        float_depthwise=True,
        keep_float=["reg_conf", "head.predictors"],
        calibration="percentile",
        percentile=99.999,
    )
)
