"""What a trained GFL says about data and predictions, beyond the detections themselves.

- :mod:`.visualization`: pictures of detections with each side's learned distribution;
- :mod:`.uncertainty`: does a distribution's spread predict the localisation error?
- :mod:`.plotting`: training curves and the spread-vs-error plot;
- :mod:`.evidence`: a model's dense outputs and detections for an image, in its pixels;
- :mod:`.label_errors`: annotation errors found with the side distributions, and their fixes;
- :mod:`.review`: the offline review page of a label check;
- :mod:`.noise` and :mod:`.label_benchmark`: injected annotation noise and the scores of a
  label-error ranking against it.

Submodules are imported on use (``from gfocal.analysis.label_errors import find_label_issues``):
none of them is needed to train or run a model.
"""
