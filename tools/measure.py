#!/usr/bin/env python
"""Measurements that need a process of their own (used by tools/frontier.py; imports numpy,
OpenCV and gfocal_runtime only, so a runtime's memory is the runtime's):

    python tools/measure.py peak-rss OUT -- COMMAND...     # run COMMAND; OUT/peak_rss.json: its peak RSS
    python tools/measure.py latency EXPORT BACKEND IMAGES...  # one json line: median batch-1 ms, peak RSS
"""

import json
import os
import resource
import subprocess
import sys
import time


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MiB: of this process (its VmHWM: ``ru_maxrss`` would keep the
    parent's before ``exec``) or, with ``RUSAGE_CHILDREN``, of the largest waited-for child."""
    if who == resource.RUSAGE_SELF and os.path.isfile("/proc/self/status"):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    return resource.getrusage(who).ru_maxrss / 1024


def time_runtime(folder: str, backend: str, files) -> dict:
    """Median ms of one batch-1 ``gfocal_runtime.Detector`` call (2 threads) over ``files`` read as
    BGR, after a warm-up, and this process's peak RSS."""
    import cv2
    import numpy as np

    from gfocal_runtime import Detector

    detector = Detector(folder, backend=backend, num_threads=2)
    images = [cv2.imread(f) for f in files]
    if any(image is None for image in images):
        raise SystemExit(f"error: cannot read {files[[i is None for i in images].index(True)]}")
    detector(images[0])
    times = []
    for image in images:
        start = time.perf_counter()
        detector(image)
        times.append(time.perf_counter() - start)
    return {"latency_ms": 1000 * float(np.median(times)), "peak_rss_mb": peak_rss_mb()}


def main(argv) -> int:
    if len(argv) >= 4 and argv[0] == "peak-rss" and argv[2] == "--":
        code = subprocess.call(argv[3:])
        with open(os.path.join(argv[1], "peak_rss.json"), "w") as f:
            json.dump({"peak_rss_mb": peak_rss_mb(resource.RUSAGE_CHILDREN)}, f)
        return code
    if len(argv) >= 4 and argv[0] == "latency":
        print(json.dumps(time_runtime(argv[1], argv[2], argv[3:])))
        return 0
    expected = "'peak-rss OUT -- COMMAND...' or 'latency EXPORT BACKEND IMAGES...'"
    print(f"error: expected {expected}, got {' '.join(argv)!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
