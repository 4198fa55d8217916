"""The label check: annotation errors found with GFL's side distributions, and their fixes.

- :mod:`.evidence`: a model's dense outputs and detections for an image, in its pixels;
- :mod:`.scoring`: the issues (location, class, missing, spurious, duplicate) scored from that
  evidence, plain data in and a ranked list out, and the corrections applied to a COCO dict;
- :mod:`.review`: the offline review page;
- :mod:`.pipeline`: the check end to end (reading, out-of-fold training, cached scoring,
  outputs, applying the page's decisions) behind ``tools/find_label_errors.py``;
- :mod:`.noise` and :mod:`.benchmark`: injected annotation noise, and the scores of a ranking
  against it (``tools/benchmark_label_errors.py``).
"""

from .benchmark import evaluate_issues
from .evidence import collect_evidence
from .native import spec_to_coco, write_corrections
from .noise import inject_noise
from .pipeline import apply_decisions, check_labels, dataset_files, read_coco
from .review import write_review_page
from .scoring import ISSUE_TYPES, apply_issues, find_label_issues

__all__ = [
    "spec_to_coco",
    "write_corrections",
    "ISSUE_TYPES",
    "apply_decisions",
    "apply_issues",
    "check_labels",
    "collect_evidence",
    "dataset_files",
    "evaluate_issues",
    "find_label_issues",
    "inject_noise",
    "read_coco",
    "write_review_page",
]
