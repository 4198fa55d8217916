"""Find annotation errors with GFL's side distributions: which annotations look wrong, how, and
what they should be.

Plain data in, a ranked list out, no I/O (the shape of cleanlab's ``find_label_issues``):
:func:`find_label_issues` takes COCO-like image records and, per image, the model's evidence
(:mod:`gfocal.label_check.evidence`; best out-of-fold, from a model that never trained on the
image) and scores five kinds of issue:

- ``location``: one or more sides of an annotated box are off. The locations that see the
  object (IoU >= 0.5 with the annotation, weighted by IoU^4 and their score at the annotated
  class squared), in every view the evidence holds (the image at one or more sizes and their
  mirrors), each estimate all four edges; their weighted mean is the model's edge and the
  spread of their side distributions (plus their disagreement) its uncertainty. Each annotated
  edge's residual is weighed under a right side (sharp or ambiguous) and a wrong one, fitted
  to the whole dataset (:func:`_fit_location_two_sided`); a box's score is the probability
  that any side is wrong. ``p_annotated`` is the right-side density at the annotated edge over
  its density at the model's edge.
- ``class``: the annotated class against the model's class scores at the same locations
  (weighted by IoU^8 and score, whatever class they say; each location only for the
  annotation its box overlaps most), under a fitted uniform label-noise model
  (:func:`_class_posterior`), times the probability that the annotation is a real, single
  object (not ``spurious``, not a ``duplicate``): a box on nothing or a copy has no class to
  correct.
- ``missing``: a detection (one per object) that no annotation covers (IoU < 0.4 with all):
  the posterior that it is a real, unannotated object (:func:`_fit_missing`), times a Bayes
  factor for how much of it lies inside another annotation (:func:`_inside_factor`).
- ``spurious``: an annotation on nothing: the model's strongest overlap-weighted score on it,
  against that of boxes of the dataset's sizes simulated on empty places of the same images
  (:func:`_fit_spurious`).
- ``duplicate``: two annotations of one object: a logistic in their IoU (0.5 at IoU 0.75 for
  the same class, 0.85 for different classes); the member that the model supports less is the
  duplicate.

Scores are suspicions in [0, 1]: the model's posterior that the issue is real, so 0.5 is
about even odds on data like the data they were fitted on.
"""

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from gfocal_runtime.boxes import greedy_nms, pairwise_iou, xywh_to_xyxy, xyxy_to_xywh

__all__ = ["ISSUE_TYPES", "SIDES", "find_label_issues", "apply_issues"]

ISSUE_TYPES = ("location", "class", "missing", "spurious", "duplicate")
SIDES = ("left", "top", "right", "bottom")

SUPPORT_IOU = 0.4  # a location supports an annotation when its box overlaps it this much
EDGE_IOU, EDGE_IOU_POWER = 0.5, 4.0  # the edges come from closer ones, weighted by IoU ** 4 (and score ** 2)
CLASS_IOU_POWER = 8.0  # the class from the same ones, weighted by IoU ** 8 (and score)
MATCH_IOU, UNMATCHED_IOU = 0.5, 0.4  # detection <-> annotation, for `missing`
INSIDE_BINS = 10  # bins of a missing candidate's share inside another annotation
T_DOF = 2.0  # Student-t degrees of freedom of a right side's residual (heavy tails: hard edges)
# The share of wrong annotations of each kind is fitted, but never below this: a check that
# believed errors rarer than 1 in 100 would flag a lone, obvious one at less than even odds.
PRIOR_FLOOR = 0.01


# ------------------------------------------------------------------ per-image evidence


def _support(
    dense: Dict[str, np.ndarray], boxes: np.ndarray, labels: Optional[np.ndarray] = None
) -> Dict[str, np.ndarray]:
    """What the dense locations say about each of A annotated boxes (A, 4) XYXY of classes
    ``labels`` (A,) (indices into the model's classes; None: any class).

    Returns: mass (A,) summed weights, edges (A, 4) and sigma (A, 4) in px, class_scores (A, K)
    and class_weight (A,) the summed weight of the locations they come from, spur (A,) the
    strongest IoU-weighted quality on the box."""
    num, num_classes = len(boxes), dense["scores"].shape[1]
    if len(dense["boxes"]) == 0 or num == 0:
        return {
            "mass": np.zeros(num),
            "edges": np.zeros((num, 4)),
            "sigma": np.ones((num, 4)),
            "class_scores": np.zeros((num, num_classes)),
            "class_weight": np.zeros(num),
            "spur": np.zeros(num),
        }
    scores = dense["scores"].astype(np.float64)  # (R, K)
    quality = scores.max(axis=1)  # (R,)
    iou = pairwise_iou(boxes, dense["boxes"])  # (A, R)
    weights = np.where(iou >= SUPPORT_IOU, quality[None, :] ** 2, 0.0)  # (A, R)
    mass = weights.sum(axis=1)
    safe = np.where(mass > 0, mass, 1.0)[:, None]
    # The edges: from the locations that see this object (IoU >= EDGE_IOU) as this class, the
    # closer their box and the surer their score the more (a neighbour's box, or one of another
    # class on top of an occluded object, counts little).
    same = quality[None, :] if labels is None else scores[:, labels].T  # (A, R)
    w_edge = np.where(iou >= EDGE_IOU, same**2 * iou**EDGE_IOU_POWER, 0.0)
    w_edge = np.where(w_edge.sum(axis=1, keepdims=True) > 0, w_edge, weights)  # too far off: the loose set
    edges_r = dense["boxes"].astype(np.float64)  # (R, 4)
    sig_r = np.maximum(dense["sigmas"].astype(np.float64), 0.25)  # (R, 4)
    edge_mass = np.where(w_edge.sum(axis=1) > 0, w_edge.sum(axis=1), 1.0)[:, None]
    edges = w_edge @ edges_r / edge_mass  # (A, 4)
    # One reweighting step: locations far from the consensus (another object's edge) count less.
    dev = (edges_r[None] - edges[:, None]) / (2 * sig_r[None] + 1.0)  # (A, R, 4)
    w4 = w_edge[..., None] / (1.0 + dev**2)  # (A, R, 4)
    mass4 = np.where(w4.sum(axis=1) > 0, w4.sum(axis=1), 1.0)
    edges = np.where(mass[:, None] > 0, (w4 * edges_r[None]).sum(axis=1) / mass4, edges)
    spread = (w4 * (sig_r[None] ** 2 + (edges_r[None] - edges[:, None]) ** 2)).sum(axis=1) / mass4
    # The class: from the same close locations, whatever class they say (IoU ** 8 and score:
    # a neighbour's or an occluder's locations, whose boxes overlap less, count far less).
    # Each location's class counts for the annotation its box overlaps most (an occluder's
    # locations overlap the occluded box too, its own box more).
    own = iou >= iou.max(axis=0, keepdims=True)  # (A, R)
    w_cls = np.where((iou >= EDGE_IOU) & own, quality[None, :] * iou**CLASS_IOU_POWER, 0.0)
    cls_mass = w_cls.sum(axis=1, keepdims=True)
    class_scores = np.where(
        cls_mass > 0, w_cls @ scores / np.where(cls_mass > 0, cls_mass, 1.0), weights @ scores / safe
    )
    return {
        "mass": mass,
        "edges": edges,
        "sigma": np.sqrt(np.maximum(spread, 0.25)),
        "class_scores": class_scores,
        "class_weight": cls_mass[:, 0],
        "spur": (iou * quality[None, :]).max(axis=1),
    }


def _background_boxes(rng, boxes: np.ndarray, sizes: np.ndarray, height: int, width: int, count: int) -> np.ndarray:
    """Up to ``count`` boxes of the dataset's sizes ((S, 2) w, h) at random places of an image
    that overlap none of its ``boxes`` (IoU < 0.1): what an annotation on nothing looks like."""
    if len(sizes) == 0:
        return np.zeros((0, 4))
    wh = sizes[rng.integers(len(sizes), size=4 * count)]
    wh = np.minimum(wh, [width, height])
    x0 = rng.uniform(0, 1, len(wh)) * (width - wh[:, 0])
    y0 = rng.uniform(0, 1, len(wh)) * (height - wh[:, 1])
    cand = np.stack([x0, y0, x0 + wh[:, 0], y0 + wh[:, 1]], axis=1)
    if len(boxes):
        cand = cand[pairwise_iou(cand, boxes).max(axis=1) < 0.1]
    return cand[:count]


# ------------------------------------------------------------------ calibration


def _t_logpdf(z: np.ndarray, dof: float = T_DOF) -> np.ndarray:
    c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return c - (dof + 1) / 2 * np.log1p(z**2 / dof)


def _scaled_t_logpdf(d: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return _t_logpdf(d / scale) - np.log(scale)


def _null_logpdf(d: np.ndarray, s: np.ndarray, taus, weights) -> np.ndarray:
    """log density of a right side's residual d (scale s): a mixture of Student-t's of scales
    tau_k * s with ``weights`` (summing to 1)."""
    parts = [math.log(w) + _scaled_t_logpdf(d, t * s) for t, w in zip(taus, weights)]
    return np.logaddexp.reduce(np.stack(parts), axis=0)


OUTWARD = np.array([-1.0, -1.0, 1.0, 1.0])  # sign of a residual that puts the annotated edge outside the model's


def _wrong_side_logpdf(d: np.ndarray, half: np.ndarray) -> np.ndarray:
    """log density of a wrong side's residual d: flat within +-half, beyond it falling off as
    a right side's t does (|d| ** -(dof + 1)), so that a side moved further never looks less
    wrong than one moved to the edge of the range."""
    tail = T_DOF + 1
    log_flat = -np.log(2 * half) + math.log((tail - 1) / tail)  # normalised over the line
    return log_flat - tail * np.log(np.maximum(np.abs(d) / half, 1.0))


def _fit_location(d: np.ndarray, s: np.ndarray, half: np.ndarray, outward: np.ndarray, iters: int = 100):
    """EM over all scored sides: residuals d (N,), scales s (N,), the wrong sides' half-ranges
    half (N,), outward (N,) whether the annotated edge lies outside the model's.

    A right side is sharp (t of scale tau_1 s) or ambiguous (tau_2 s >= 2 tau_1 s: an occluded
    or blurred edge), with taus and weights of its own for each half: a right side's error is
    not symmetric (the amodal box of an occluded object reaches past what the model sees, so
    annotations outside the model's edge are common; inside, rare). A wrong side is flat
    within +-half (:func:`_wrong_side_logpdf`), as likely outside as inside, one share pi of
    all sides: so a pile of residuals on one half only is taken for ambiguous right sides, not
    for wrong ones. The ambiguous widths start at 4 and at 16 times the sharp ones (a narrow
    start can leave a wide pile of near misses to the wrong sides); the likelier fit is kept.
    Returns (posterior that each side is wrong (N,), {outward: (taus, weights)}, pi, log
    likelihood)."""
    if len(d) == 0:
        return np.zeros(0), {h: ((1.0, 1.0), (0.5, 0.5)) for h in (False, True)}, 0.0, 0.0
    z0 = d / s
    log_alt = _wrong_side_logpdf(d, half)
    halves = [np.nonzero(outward == h)[0] for h in (False, True)]
    sharp = [max(float(np.median(np.abs(z0[i]))) / 0.77, 1e-3) if len(i) else 1.0 for i in halves]
    fits = [_location_em(d, s, z0, log_alt, halves, sharp, ratio, iters) for ratio in (4.0, 16.0)]
    return max(fits, key=lambda fit: fit[3])


def _location_em(d, s, z0, log_alt, halves, sharp, ratio, iters):
    num = len(d)
    taus = [[t, ratio * t] for t in sharp]
    weights = [np.array([0.88, 0.12]) for _ in halves]  # sharp, ambiguous (of the right sides)
    pi, post, loglik = 0.03, np.zeros(num), 0.0
    for _ in range(iters):
        wrong_total, loglik = 0.0, 0.0
        for h, idx in enumerate(halves):
            if len(idx) == 0:
                continue
            wrong_share = min(pi * num / (2 * len(idx)), 0.9)  # P(wrong | this half)
            dh, sh, zh = d[idx], s[idx], z0[idx]
            logs = np.stack(
                [math.log((1 - wrong_share) * weights[h][k]) + _scaled_t_logpdf(dh, taus[h][k] * sh) for k in range(2)]
                + [math.log(wrong_share) + log_alt[idx]]
            )
            norm = np.logaddexp.reduce(logs, axis=0)
            loglik += float(norm.sum())
            resp = np.exp(logs - norm)
            for k in range(2):
                u = (T_DOF + 1) / (T_DOF + (zh / taus[h][k]) ** 2)  # t-distribution EM weights
                taus[h][k] = max(float(np.sqrt((resp[k] * u * zh**2).sum() / max(resp[k].sum(), 1e-9))), 1e-3)
            taus[h][1] = max(taus[h][1], 2 * taus[h][0])
            right = np.maximum(resp[:2].sum(axis=1), 1e-6)
            weights[h] = right / right.sum()
            post[idx] = resp[2]
            wrong_total += float(resp[2].sum())
        pi = min(max(wrong_total / num, PRIOR_FLOOR), 0.5)
    nulls = {bool(h): (tuple(taus[h]), tuple(weights[h])) for h in range(2)}
    return post.copy(), nulls, pi, loglik


# Two shapes of the location model are fitted to each dataset by maximum likelihood, a grid
# each: how a right side's error grows with the spread of its distributions (scale
# tau * s_ref * (s / s_ref) ** gamma, a power for each half: a sharp distribution's edge is
# closer than proportionally), and how far a wrong side reaches (flat within +- reach * the
# box's extent, at least MIN_REACH_PX).
SCALE_POWERS = (1.0, 1.25, 1.5, 1.75, 2.0)
REACHES = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.75)
MIN_REACH_PX = 2.0
FIT_SAMPLE = 200_000  # sides the grid search sees (the final fit sees all)


def _power_scale(s: np.ndarray, gamma: float, ref: float) -> np.ndarray:
    return ref * (s / ref) ** gamma


def _fit_location_two_sided(d: np.ndarray, s: np.ndarray, extent: np.ndarray, seed: int = 0):
    """:func:`_fit_location` for the residuals d (N, 4) of scales s (N, 4), ``extent`` (N, 4)
    the box's extent along each side's axis, with the scale powers and the reach chosen by
    likelihood (one coordinate pass on at most ``FIT_SAMPLE`` sides: each half's power at
    reach 0.5, then the reach). Returns (posterior (N, 4), outward (N, 4) bool, {outward:
    (taus, weights, gamma, s_ref)}, reach)."""
    outward = (d * OUTWARD > 0).ravel()
    d, s, extent = d.ravel(), s.ravel(), extent.ravel()
    refs = {h: float(np.median(s[outward == h])) if (outward == h).any() else 1.0 for h in (False, True)}
    pick = np.arange(len(d))
    if len(d) > FIT_SAMPLE:
        pick = np.sort(np.random.default_rng(seed).choice(len(d), FIT_SAMPLE, replace=False))

    def scale(gammas, idx):
        return np.where(
            outward[idx],
            _power_scale(s[idx], gammas[True], refs[True]),
            _power_scale(s[idx], gammas[False], refs[False]),
        )

    def fit(gammas, reach, idx, iters):
        half = np.maximum(reach * extent[idx], MIN_REACH_PX)
        return _fit_location(d[idx], scale(gammas, idx), half, outward[idx], iters)

    gammas, reach = {False: 1.5, True: 1.5}, 0.5
    for h in (False, True):
        gammas[h] = max(SCALE_POWERS, key=lambda g: fit({**gammas, h: g}, reach, pick, 60)[3])
    reach = max(REACHES, key=lambda r: fit(gammas, r, pick, 60)[3])
    post, nulls, _, _ = fit(gammas, reach, np.arange(len(d)), 100)
    nulls = {h: (*nulls[h], gammas[h], refs[h]) for h in (False, True)}
    return post.reshape(-1, 4), outward.reshape(-1, 4), nulls, reach


# How far the class evidence of an annotation is trusted is fitted to each dataset by maximum
# likelihood, a grid each: its temperature is T0 * (w / w_ref) ** -power * exp(occlusion * inside),
# w the summed weight of the locations that voted (a class read off a few faint locations is a
# guess; off many sure ones, a finding), ``inside`` how much of the annotation lies inside
# another one (an occluded object's locations also see its occluder).
CLASS_TEMPERATURES = (0.05, 0.07, 0.1, 0.12, 0.14, 0.17, 0.2, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0)
CLASS_WEIGHT_POWERS = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)
CLASS_OCCLUSION = (0.0, 0.5, 1.0, 2.0, 3.0)
CLASS_FIT_SAMPLE = 50_000  # annotations the grid search sees (the posteriors are for all)


def _class_posterior(scores: np.ndarray, labels: np.ndarray, weight: np.ndarray, inside: np.ndarray, seed: int = 0):
    """Posterior that each label is wrong, from the model's class scores (A, K) at the object,
    the labels (A,), the weight of that evidence (A,) and how much of each annotation lies
    inside another one (A,). The model's class probabilities are
    the scores sharpened or flattened by a temperature per annotation (:data:`CLASS_TEMPERATURES`
    and the lines above them); its three parameters and the share of uniformly flipped labels
    are fitted by maximum likelihood, alternately. Returns (posterior (A,), model class
    probabilities (A, K), {"T0", "power", "occlusion", "w_ref"}, share)."""
    num, k = scores.shape
    if num == 0 or k < 2:
        return np.zeros(num), np.zeros_like(scores), {}, 0.0
    weight = np.maximum(np.asarray(weight, np.float64), 1e-4)
    inside = np.asarray(inside, np.float64)
    w_ref = float(np.median(weight))
    logs = np.log(np.maximum(scores, 1e-4))
    grid = [(t, p, c) for t in CLASS_TEMPERATURES for p in CLASS_WEIGHT_POWERS for c in CLASS_OCCLUSION]

    def probabilities(params, rows):
        t0, power, occlusion = params
        temp = t0 * (weight[rows] / w_ref) ** -power * np.exp(occlusion * inside[rows])
        z = logs[rows] / temp[:, None]
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    rows = np.arange(num)
    if num > CLASS_FIT_SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(num, CLASS_FIT_SAMPLE, replace=False))
    m_l = np.stack([probabilities(params, rows)[np.arange(len(rows)), labels[rows]] for params in grid])  # (G, A')
    best, share = 0, 0.05
    for _ in range(30):
        loglik = np.log(m_l * (1 - share) + (1 - m_l) * share / (k - 1)).sum(axis=1)  # (G,)
        best = int(np.argmax(loglik))
        mine = m_l[best]
        wrong = (1 - mine) * share / (k - 1)
        share = float(np.clip((wrong / (mine * (1 - share) + wrong)).mean(), PRIOR_FLOOR, 0.5))
    probs = probabilities(grid[best], np.arange(num))
    mine = probs[np.arange(num), labels]
    wrong = (1 - mine) * share / (k - 1)
    fit = {"T0": grid[best][0], "power": grid[best][1], "occlusion": grid[best][2], "w_ref": w_ref}
    return wrong / (mine * (1 - share) + wrong), probs, fit, share


def _decreasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-increasing sequence closest to ``values`` (N,) in weighted least squares
    (``weights`` (N,)): pool-adjacent-violators."""
    means, sizes, counts = [], [], []
    for value, weight in zip(values.tolist(), weights.tolist()):
        means.append(value)
        sizes.append(weight)
        counts.append(1)
        while len(means) > 1 and means[-2] < means[-1]:
            total = sizes[-2] + sizes[-1]
            means[-2:] = [(means[-2] * sizes[-2] + means[-1] * sizes[-1]) / total]
            sizes[-2:] = [total]
            counts[-2:] = [counts[-2] + counts[-1]]
    return np.repeat(means, counts)


SPURIOUS_QUANTILES = (0.1, 0.2, 0.3, 0.4)  # of the simulated evidence, where the share is read off


def _fit_spurious(observed: np.ndarray, simulated: np.ndarray):
    """Posterior that each annotation is on nothing, from its evidence (A,) and the evidence of
    boxes on nothing simulated in the same images (S,): the local false discovery rate with a
    known component, share * f_sim(x) / f_observed(x), made non-increasing in x (less evidence
    is never less suspicious). The share is read off the low end, where real annotations are
    rare: below the simulation's q-quantile lie share * q of the annotations plus the few real
    ones there, so share ~ F_observed(t_q) / q (the median over :data:`SPURIOUS_QUANTILES`; an
    overestimate by the real ones below, which are few). Both densities are histograms on bins
    of equal counts of the pooled values (~0.7 sqrt(A) of them, 20..80: fine where the evidence
    of boxes on nothing piles up). Returns (posterior (A,), share)."""
    if len(observed) == 0:
        return np.zeros(0), 0.0
    if len(simulated) == 0:
        return np.zeros(len(observed)), PRIOR_FLOOR
    cut = np.quantile(simulated, SPURIOUS_QUANTILES)
    below = (observed[None, :] < cut[:, None]).mean(axis=1)  # (Q,) F_observed at each quantile
    share = float(np.clip(np.median(below / np.array(SPURIOUS_QUANTILES)), PRIOR_FLOOR, 0.5))
    bins = int(np.clip(round(0.7 * math.sqrt(len(observed))), 20, 80))
    edges = np.unique(np.quantile(np.concatenate([observed, simulated]), np.linspace(0, 1, bins + 1)))[1:-1]
    index = np.searchsorted(edges, observed, side="right")
    count_obs = np.bincount(index, minlength=len(edges) + 1) + 0.5
    count_sim = np.bincount(np.searchsorted(edges, simulated, side="right"), minlength=len(edges) + 1) + 0.5
    ratio = (count_sim / count_sim.sum()) / (count_obs / count_obs.sum())  # f_sim / f_observed per bin
    post = np.clip(_decreasing(share * ratio, count_obs), 0.0, 1.0)
    return post[index], share


def _fit_missing(det_scores: np.ndarray, det_matched: np.ndarray, cand_scores: np.ndarray):
    """Posterior that each unmatched detection (scores ``cand_scores``) is a real, unannotated
    object. ``det_scores`` / ``det_matched``: one detection per object, matched or not, and
    whether an annotation covers it (IoU >= 0.5).

    m(s), the share of detections of score s that an annotation covers, is read off in score
    bins (monotone; twelfths of all detections and of the covered ones). A detection is real
    with probability r(s), and a real object unannotated with probability pi: m = r (1 - pi).
    The most confident detections are real (r = 1), so pi = 1 - m at the top bin; then
    P(real | s, unmatched) = r(s) pi / (1 - m(s)).
    Returns (posterior, pi)."""
    if len(cand_scores) == 0:
        return np.zeros(0), 0.0
    # Bins of equal counts of all detections and of the covered ones: the latter are fine at
    # the top, where pi is read off (the top twelfth of all detections reaches far down).
    steps = np.linspace(0, 1, 13)
    covered_scores = det_scores[det_matched] if det_matched.any() else det_scores
    edges = np.unique(np.concatenate([np.quantile(det_scores, steps), np.quantile(covered_scores, steps)]))
    if len(edges) < 2:
        edges = np.array([0.0, 1.0])
    index = np.clip(np.searchsorted(edges, det_scores, side="right") - 1, 0, len(edges) - 2)
    hits = np.bincount(index, det_matched.astype(float), len(edges) - 1)
    total = np.bincount(index, None, len(edges) - 1)
    covered = np.maximum.accumulate((hits + 0.5) / (total + 1.0))  # higher scores are not covered less
    share = float(np.clip(1.0 - covered[-1], PRIOR_FLOOR, 0.5))
    centres = (edges[:-1] + edges[1:]) / 2
    m = np.clip(np.interp(cand_scores, centres, covered), 1e-4, 1 - 1e-4)
    real = np.minimum(m / (1 - share), 1.0)
    return np.clip(real * share / (1 - m), 0, 1), share


def _inside_share(det_boxes: np.ndarray, boxes: np.ndarray, own: np.ndarray) -> np.ndarray:
    """(M,) the largest share of each detection's area (M, 4) inside one of the annotated boxes
    (A, 4), its own match ``own`` (M,) (-1: none) left out."""
    if len(det_boxes) == 0 or len(boxes) == 0:
        return np.zeros(len(det_boxes))
    lt = np.maximum(det_boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(det_boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)  # (M, A)
    area = np.maximum(np.prod(np.clip(det_boxes[:, 2:] - det_boxes[:, :2], 0, None), axis=1), 1e-6)
    share = inter / area[:, None]
    rows = np.nonzero(own >= 0)[0]
    share[rows, own[rows]] = 0.0
    return share.max(axis=1)


def _inside_factor(real_inside: np.ndarray, cand_inside: np.ndarray, cand_scores: np.ndarray) -> np.ndarray:
    """Bayes factor (C,) for each unmatched detection from how much of it lies inside another
    annotation: the visible part of an annotated, occluded object is detected on its own and
    looks like a missing box. Real objects (the matched detections; their inside shares
    ``real_inside``) lie inside other annotations as often as an unannotated real one would;
    the candidates of a score bin whose share is in the same inside bin are that much likelier
    to be parts: factor = P(bin | real) / P(bin | candidate of that score)."""
    inside_bin = lambda x: np.minimum((np.clip(x, 0, 1) * INSIDE_BINS).astype(int), INSIDE_BINS - 1)  # noqa: E731
    p_real = np.bincount(inside_bin(real_inside), minlength=INSIDE_BINS) + 0.5
    p_real = p_real / (len(real_inside) + 0.5 * INSIDE_BINS)
    score_edges = np.unique(np.quantile(cand_scores, np.linspace(0, 1, 7)))
    score_bin = np.clip(np.searchsorted(score_edges, cand_scores, side="right") - 1, 0, max(len(score_edges) - 2, 0))
    cand_bin = inside_bin(cand_inside)
    cell = score_bin * INSIDE_BINS + cand_bin  # (score bin, inside bin) of each candidate
    p_cand = (np.bincount(cell)[cell] + 0.5) / (np.bincount(score_bin)[score_bin] + 0.5 * INSIDE_BINS)
    return p_real[cand_bin] / p_cand


# ------------------------------------------------------------------ the ranking


def find_label_issues(
    images: Sequence[Dict[str, Any]],
    evidence: Dict[Any, Optional[Dict[str, Dict[str, np.ndarray]]]],
    category_ids: Sequence[int],
    threshold: float = 0.5,
    min_score: float = 0.01,
    seed: int = 0,
) -> List[Dict[str, Any]]:
    """Score every annotation and every unannotated detection for the five issue types.

    Args:
        images: COCO-like records: {"id", "file_name", "height", "width", "annotations":
            [{"id", "bbox" (XYWH px), "category_id"}]} (crowd annotations are left alone).
        evidence: image id -> :func:`gfocal.label_check.evidence.dense_evidence`'s dict for that
            image (classes as indices into ``category_ids``), or None for an image that could
            not be read (nothing is said about it).
        category_ids: the dataset's category ids; the model's class i is ``category_ids[i]``.
        threshold: issues scoring at least this get ``"flagged": True``.
        min_score: issues scoring below this are left out.

    Returns:
        issues sorted by score (highest first), each {"id", "type", "score", "flagged",
        "image_id", "file_name", "annotation_id", "category_id", "bbox", "suggested_bbox",
        "suggested_category_id"}, location issues with "sides" {side: {"annotated",
        "suggested", "p_annotated", "p_wrong"}}, duplicates with "duplicate_of".
    """
    rng = np.random.default_rng(seed)
    cat_index = {int(c): i for i, c in enumerate(category_ids)}
    anns, dets, pairs, sims = [], [], [], []
    sizes = np.array(
        [[float(a["bbox"][2]), float(a["bbox"][3])] for r in images for a in r.get("annotations", [])], np.float64
    ).reshape(-1, 2)
    for record in images:
        ev = evidence.get(record["id"])
        if ev is None:
            continue
        items = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = xywh_to_xyxy([a["bbox"] for a in items]).reshape(-1, 4)
        labels = np.array([cat_index.get(int(a["category_id"]), -1) for a in items], np.int64)
        sup = _support(ev["dense"], boxes, labels if (labels >= 0).all() else None)
        sup["inside"] = _inside_share(boxes, boxes, np.arange(len(boxes)))
        for i, a in enumerate(items):
            anns.append((record, a, boxes[i], {k: v[i] for k, v in sup.items()}))
        background = _background_boxes(rng, boxes, sizes, record["height"], record["width"], 4)
        sims.append(_support(ev["dense"], background)["spur"])
        det = ev["detections"]
        iou = pairwise_iou(det["boxes"], boxes)  # (M, A)
        best = iou.max(axis=1) if len(boxes) else np.zeros(len(det["boxes"]))
        own = np.where(best >= MATCH_IOU, iou.argmax(axis=1) if len(boxes) else -1, -1)
        dets.append((record, det, best, _inside_share(det["boxes"], boxes, own)))
        if len(boxes) > 1:
            aa = pairwise_iou(boxes, boxes)
            i, j = np.nonzero(np.triu(aa >= 0.5, k=1))
            for a_i, a_j in zip(i.tolist(), j.tolist()):
                same = items[a_i]["category_id"] == items[a_j]["category_id"]
                pairs.append((record, items[a_i], items[a_j], aa[a_i, a_j], same, sup["spur"][a_i], sup["spur"][a_j]))

    spurious = _spurious_issues(anns, np.concatenate(sims) if sims else np.zeros(0))
    duplicates = _duplicate_issues(pairs)
    # A wrong class is a real object's: P(wrong class) * P(not on nothing) * P(not a copy).
    real = {}
    for x in spurious + duplicates:
        real[x["annotation_id"]] = real.get(x["annotation_id"], 1.0) * (1.0 - x["score"])
    issues = _location_issues(anns) + _class_issues(anns, cat_index, category_ids, real) + spurious
    issues += _missing_issues(dets, category_ids) + duplicates
    issues = [x for x in issues if x["score"] >= min_score]
    issues.sort(key=lambda x: (-x["score"], x["type"], str(x["image_id"]), str(x["annotation_id"])))
    for n, issue in enumerate(issues):
        issue["id"] = f"{issue['type']}-{n}"
        issue["flagged"] = bool(issue["score"] >= threshold)
    return issues


def _rounded_xywh(box) -> List[float]:
    """(4,) XYXY -> [x, y, w, h] rounded to 2 decimals (Python's round, as written to the json)."""
    return [round(v, 2) for v in xyxy_to_xywh(box).tolist()]


def _base(record, annotation, issue_type: str, score: float) -> Dict[str, Any]:
    return {
        "type": issue_type,
        "score": round(float(score), 4),
        "image_id": record["id"],
        "file_name": record["file_name"],
        "annotation_id": None if annotation is None else annotation["id"],
        "category_id": None if annotation is None else annotation["category_id"],
        "bbox": None if annotation is None else [float(v) for v in annotation["bbox"]],
        "suggested_bbox": None,
        "suggested_category_id": None,
    }


def _location_issues(anns) -> List[Dict[str, Any]]:
    scored = [k for k, (_, _, _, sup) in enumerate(anns) if sup["mass"] > 0.02]
    if not scored:
        return []
    boxes = np.stack([anns[k][2] for k in scored])  # (N, 4)
    edges = np.stack([anns[k][3]["edges"] for k in scored])
    sigma = np.stack([anns[k][3]["sigma"] for k in scored])
    extent = np.maximum(boxes[:, 2:] - boxes[:, :2], edges[:, 2:] - edges[:, :2])  # (N, 2): w, h
    d = boxes - edges
    q, outward, nulls, _ = _fit_location_two_sided(d, sigma, np.concatenate([extent, extent], axis=1))
    p_annotated = np.ones_like(d)
    for side, (taus, weights, gamma, ref) in nulls.items():
        where = outward == side
        scale = _power_scale(sigma[where], gamma, ref)
        at_edge = _null_logpdf(np.zeros(int(where.sum())), scale, taus, weights)
        p_annotated[where] = np.exp(_null_logpdf(d[where], scale, taus, weights) - at_edge)
    score = 1.0 - np.prod(1.0 - q, axis=1)
    out = []
    for row, k in enumerate(scored):
        record, a, box, _ = anns[k]
        moved = q[row] >= 0.5
        if not moved.any():
            moved[int(np.argmax(q[row]))] = True
        suggested = np.where(moved, edges[row], box)
        issue = _base(record, a, "location", score[row])
        issue["suggested_bbox"] = _rounded_xywh(suggested)
        issue["sides"] = {
            side: {
                "annotated": round(float(box[s]), 2),
                "suggested": round(float(suggested[s]), 2),
                "p_annotated": round(float(p_annotated[row, s]), 4),
                "p_wrong": round(float(q[row, s]), 4),
            }
            for s, side in enumerate(SIDES)
        }
        out.append(issue)
    return out


def _class_issues(anns, cat_index, category_ids, real: Dict[Any, float]) -> List[Dict[str, Any]]:
    """Class issues; ``real``: annotation id -> P(a real, single object) (missing: 1)."""
    scored = [k for k, (_, a, _, sup) in enumerate(anns) if sup["mass"] > 0.02 and a["category_id"] in cat_index]
    if not scored:
        return []
    scores = np.stack([anns[k][3]["class_scores"] for k in scored])
    labels = np.array([cat_index[anns[k][1]["category_id"]] for k in scored])
    weight = np.array([anns[k][3]["class_weight"] for k in scored])
    inside = np.array([anns[k][3]["inside"] for k in scored])
    post, probs, _, _ = _class_posterior(scores, labels, weight, inside)
    out = []
    for row, k in enumerate(scored):
        record, a, _, _ = anns[k]
        others = probs[row].copy()
        others[labels[row]] = -1
        issue = _base(record, a, "class", post[row] * real.get(a["id"], 1.0))
        issue["suggested_category_id"] = int(category_ids[int(np.argmax(others))])
        out.append(issue)
    return out


def _spurious_issues(anns, simulated: np.ndarray) -> List[Dict[str, Any]]:
    observed = np.array([sup["spur"] for _, _, _, sup in anns])
    post, _ = _fit_spurious(observed, simulated)
    return [_base(record, a, "spurious", p) for (record, a, _, _), p in zip(anns, post)]


def _missing_issues(dets, category_ids) -> List[Dict[str, Any]]:
    all_scores, all_matched, cands, real_inside, cand_inside = [], [], [], [], []
    for record, det, best, inside in dets:
        # One detection per object: class-wise NMS leaves an object's detections of other classes.
        objects = greedy_nms(det["boxes"], det["scores"], 0.5, inclusive=True)
        best, inside = best[objects], inside[objects]
        decided = (best >= MATCH_IOU) | (best < UNMATCHED_IOU)
        all_scores.append(det["scores"][objects][decided])
        all_matched.append(best[decided] >= MATCH_IOU)
        real_inside.append(inside[best >= MATCH_IOU])
        unmatched = np.nonzero(best < UNMATCHED_IOU)[0]
        cand_inside.append(inside[unmatched])
        cands += [(record, det, int(objects[m])) for m in unmatched.tolist()]
    if not cands:
        return []
    cand_scores = np.array([det["scores"][m] for _, det, m in cands], np.float64)
    post, _ = _fit_missing(np.concatenate(all_scores), np.concatenate(all_matched), cand_scores)
    post = np.clip(post * _inside_factor(np.concatenate(real_inside), np.concatenate(cand_inside), cand_scores), 0, 1)
    out = []
    for (record, det, m), p in zip(cands, post):
        issue = _base(record, None, "missing", p)
        issue["suggested_bbox"] = _rounded_xywh(det["boxes"][m])
        issue["suggested_category_id"] = int(category_ids[int(det["classes"][m])])
        issue["detection_score"] = round(float(det["scores"][m]), 4)
        out.append(issue)
    return out


def _duplicate_issues(pairs) -> List[Dict[str, Any]]:
    if not pairs:
        return []
    iou = np.array([p[3] for p in pairs])
    centre = np.where([p[4] for p in pairs], 0.75, 0.85)  # same class, different classes
    scores = 1.0 / (1.0 + np.exp(-(iou - centre) / 0.04))
    best: Dict[Any, Dict[str, Any]] = {}
    for (record, a, b, _, _, spur_a, spur_b), score in zip(pairs, scores):
        # The member the model supports less is the duplicate (ties: the later id).
        dup, keep = (a, b) if (spur_a, -_id_order(a["id"])) < (spur_b, -_id_order(b["id"])) else (b, a)
        issue = _base(record, dup, "duplicate", score)
        issue["duplicate_of"] = keep["id"]
        if dup["id"] not in best or best[dup["id"]]["score"] < issue["score"]:
            best[dup["id"]] = issue
    return list(best.values())


def _id_order(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# ------------------------------------------------------------------ applying them


def apply_issues(coco: Dict[str, Any], issues: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """A copy of the COCO dict ``coco`` with ``issues`` applied: location moves the box (only
    the sides that the issue moves), class changes the category, missing adds an annotation
    (a new id after the largest), spurious and duplicate remove the annotation. Removal wins over
    a change of the same annotation. Every changed or added annotation carries
    ``"label_doctor": {"issues": [...], "changed": [...], "was": {...}}``; the removed ones are
    listed in the top-level ``"label_doctor": {"removed": [...]}``. The input is not modified."""
    out = {k: v for k, v in coco.items() if k != "annotations"}
    annotations = [dict(a) for a in coco.get("annotations", [])]
    by_id = {a["id"]: a for a in annotations}
    removed: Dict[Any, Dict[str, Any]] = {}
    for issue in issues:
        if issue["type"] in ("spurious", "duplicate") and issue["annotation_id"] in by_id:
            aid = issue["annotation_id"]
            entry = removed.setdefault(aid, {"annotation": dict(by_id[aid]), "issues": []})
            entry["issues"].append({"type": issue["type"], "score": issue["score"]})
    next_id = max([a["id"] for a in annotations if isinstance(a["id"], int)] + [0]) + 1
    added = []
    for issue in issues:
        kind = issue["type"]
        if kind == "missing":
            x, y, w, h = issue["suggested_bbox"]
            added.append(
                {
                    "id": next_id,
                    "image_id": issue["image_id"],
                    "category_id": issue["suggested_category_id"],
                    "bbox": [x, y, w, h],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                    "label_doctor": {"issues": [{"type": kind, "score": issue["score"]}], "changed": ["added"]},
                }
            )
            next_id += 1
            continue
        ann = by_id.get(issue["annotation_id"])
        if ann is None or ann["id"] in removed or kind not in ("location", "class"):
            continue
        note = ann.setdefault("label_doctor", {"issues": [], "changed": [], "was": {}})
        note["issues"].append({"type": kind, "score": issue["score"]})
        if kind == "location":
            note["was"].setdefault("bbox", list(ann["bbox"]))
            ann["bbox"] = list(issue["suggested_bbox"])
            ann["area"] = round(ann["bbox"][2] * ann["bbox"][3], 2)
            note["changed"].append("bbox")
        else:
            note["was"].setdefault("category_id", ann["category_id"])
            ann["category_id"] = issue["suggested_category_id"]
            note["changed"].append("category_id")
    out["annotations"] = [a for a in annotations if a["id"] not in removed] + added
    out["label_doctor"] = {"removed": list(removed.values()), "added": [a["id"] for a in added]}
    return out
