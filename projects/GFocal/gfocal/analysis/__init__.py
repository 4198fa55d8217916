"""What looks inside a trained GFL, beyond the detections themselves.

- :mod:`.visualization`: pictures of detections with each side's learned distribution;
- :mod:`.uncertainty`: does a distribution's spread predict the localisation error?
- :mod:`.plotting`: training curves and the spread-vs-error plot.

Submodules are imported on use (``from gfocal.analysis.visualization import draw_predictions``):
none of them is needed to train or run a model. The label check is :mod:`gfocal.label_check`.
"""
