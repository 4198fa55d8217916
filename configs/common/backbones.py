"""Backbone settings shared by several configs (one source of truth for each number and URL).

Each ``*_STAGES`` dict updates ``model.backbone.bottom_up.stages`` (``make_resnet_stages``);
each ``*_IMAGENET`` is the reference's ImageNet initialisation (torchvision / open-mmlab names;
``GFLCheckpointer`` converts them on load).
"""

R101_STAGES = dict(depth=101)
R101_IMAGENET = "https://download.pytorch.org/models/resnet101-5d3b4d8f.pth"  # torchvision://resnet101

X101_32X4D_STAGES = dict(depth=101, num_groups=32, width_per_group=4)
X101_32X4D_IMAGENET = "https://download.openmmlab.com/pretrain/third_party/resnext101_32x4d-a5af3160.pth"

R18_STAGES = dict(depth=18)
R18_IMAGENET = "https://download.pytorch.org/models/resnet18-f37072fd.pth"  # torchvision://resnet18

R34_STAGES = dict(depth=34)
R34_IMAGENET = "https://download.pytorch.org/models/resnet34-b627a593.pth"  # torchvision://resnet34
