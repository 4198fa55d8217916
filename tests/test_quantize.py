"""int8 settings (a config's ``export.int8``): which convolutions stay float on a drawn graph, how
percentile calibration differs from min-max on a drawn activation, and bad settings."""

import os

import numpy as np
import onnx
import pytest
import torch
from gfl_testing import REPO
from omegaconf import OmegaConf

from gfocal.config import load_config
from gfocal.errors import ConfigError
from gfocal.export.quantize import INT8_DEFAULTS, float_convolutions, int8_settings, quantize_int8


class Drawn(torch.nn.Module):
    """normalise -> stem (3->8) -> depthwise 3x3 (8 groups of 1) -> grouped 3x3 (2 groups of 4: not depthwise)
    -> pointwise -> head.predictors.0 (the output conv)."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.grouped = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.pw = torch.nn.Conv2d(8, 8, 1)
        self.head = torch.nn.Module()
        self.head.predictors = torch.nn.ModuleList([torch.nn.Conv2d(8, 4, 1)])

    def forward(self, images):
        x = torch.relu(self.stem((images - 0.5) * 2.0))  # normalised first, as an export is
        x = torch.relu(self.dw(x))
        x = torch.relu(self.grouped(x))
        x = torch.relu(self.pw(x))
        return self.head.predictors[0](x)


@pytest.fixture(scope="module")
def drawn_onnx(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("drawn") / "model.onnx")
    torch.manual_seed(0)
    program = torch.onnx.export(Drawn().eval(), (torch.rand(1, 3, 16, 16),), input_names=["images"], dynamo=True)
    program.save(path)
    return path


def weights_of(path, names):
    graph = onnx.load(path).graph
    return sorted(n.input[1] for n in graph.node if n.op_type == "Conv" and n.name in names)


@pytest.mark.parametrize(
    "settings, expected",
    [
        (dict(), []),
        (dict(float_stem=True), ["stem.weight"]),
        (dict(float_depthwise=True), ["dw.weight"]),  # the 2-group conv is not depthwise
        (dict(keep_float=["head.predictors"]), ["head.predictors.0.weight"]),
        (
            dict(float_stem=True, float_depthwise=True, keep_float=["head.predictors"]),
            ["dw.weight", "head.predictors.0.weight", "stem.weight"],
        ),
    ],
)
def test_the_float_convolutions_of_a_drawn_graph(drawn_onnx, settings, expected):
    graph = onnx.load(drawn_onnx).graph
    assert weights_of(drawn_onnx, float_convolutions(graph, dict(INT8_DEFAULTS, **settings))) == expected


def stem_input_scale(path):
    """The activation scale of the stem's input: Conv <- DequantizeLinear <- QuantizeLinear(x, scale)."""
    graph = onnx.load(path).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    quantised = [n for n in graph.node if n.op_type == "Conv" and n.input[1] in producer]  # weights dequantised
    (conv,) = [n for n in quantised if "stem" in producer[n.input[1]].input[0]]
    quantize = producer[producer[conv.input[0]].input[0]]
    assert quantize.op_type == "QuantizeLinear"
    return float(inits[quantize.input[1]])


def test_percentile_clips_a_rare_outlier_that_min_max_keeps(drawn_onnx, tmp_path):
    """Calibration inputs in [0, 1] with one pixel at 1000, normalised to [-1, 1] and 1999:
    min-max spreads uint8 over -1..1999 (scale ~2000/255); the 99.9th percentile ignores the
    pixel (scale ~2/255). The depthwise and output convolutions kept float leave 3 quantised."""
    rng = np.random.default_rng(0)
    batches = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(8)]
    batches[3][0, 0, 5, 5] = 1000.0
    scales = {}
    for calibration in ("minmax", "percentile"):
        out = str(tmp_path / f"{calibration}.onnx")
        settings = dict(calibration=calibration, percentile=99.9, float_depthwise=True, keep_float=["predictors"])
        summary = quantize_int8(drawn_onnx, out, iter(batches), settings)
        scales[calibration] = stem_input_scale(out)
        assert summary["quantized_convs"] == 3 and summary["float_convs"] == 2
        assert calibration.replace("minmax", "min-max") in summary["method"]
    assert 2000 / 255 * 0.95 < scales["minmax"] < 2000 / 255 * 1.05
    assert scales["percentile"] < 2.5 / 255


@pytest.mark.parametrize(
    "value, message",
    [
        (dict(keep_floats=["x"]), r"export.int8: unknown keep_floats; expected some of keep_float, float_stem"),
        (dict(calibration="entropy"), r"export.int8.calibration must be 'minmax' or 'percentile', got 'entropy'"),
        (dict(percentile=9999), r"export.int8.percentile must be a number in \[90, 100\], got 9999"),
        (dict(percentile="high"), r"export.int8.percentile must be a number in \[90, 100\], got high"),
    ],
)
def test_bad_int8_settings_are_one_clear_error(value, message):
    cfg = OmegaConf.create({"export": {"int8": value}})
    with pytest.raises(ConfigError, match=message):
        int8_settings(cfg)


def test_settings_default_without_an_export_node_and_the_nano_configs_set_theirs():
    assert int8_settings(OmegaConf.create({})) == INT8_DEFAULTS
    nano = ["Quickstart/gfl_nano_shapes.py", "Quickstart/gflv2_nano_shapes.py"]
    for name in nano + ["COCO-Detection/gfl_nano_320.py", "COCO-Detection/gfl_nano_416.py"]:
        settings = int8_settings(load_config(os.path.join(REPO, "configs", name)))
        assert settings["float_stem"] and settings["float_depthwise"] and settings["calibration"] == "percentile"
