"""Scene-text detection metrics: hmean-iou (ICDAR2015, CTW1500, DAST1500, MSRA-TD500, Total-Text VOC) and
Total-Text DetEval.

Inputs, one entry per image (the two lists are aligned by index):

* ``preds[i] = {'polygons': [(N, 2) arrays of x, y], 'scores': (P,) array}``
* ``gts[i] = {'polygons': [(N, 2) arrays of x, y], 'ignore': (G,) bools}``; ``ignore`` marks don't-care
  regions (``###`` in ICDAR2015, ``#`` in Total-Text) and may be left out (then nothing is ignored).

Polygons need N >= 3 points in x, y order (Total-Text's official files are y, x: swap them first).
Self-intersecting polygons are repaired with ``shapely.make_valid`` (a bow-tie becomes its two lobes;
mmocr's ``buffer(0)`` can drop one lobe). Polygons of zero area (collinear or repeated points) stay in
the data and have zero overlap with everything: an IoU of 0, never a crash or a NaN.

hmean-iou
---------
Sources: the ICDAR2015 Robust Reading Competition protocol (challenge 4, "Incidental Scene Text",
localization) and mmocr ``HmeanIOUMetric`` (``mmocr/evaluation/metrics/hmean_iou_metric.py`` with
``mmocr/evaluation/functional/hmean.py``; the spec cites mmocr main at 966296f2, the rules below were
checked against the main-branch files, 093ca4c and 1f0b544). Per image:

1. A prediction is *discarded* (neither TP nor FP) if its intersection with any ignored GT, divided by
   its own area, is > ``ignore_precision_thr`` (0.5). A prediction of zero area is never discarded
   (mmocr divides by ``area + 1e-5``, which gives 0 there; we divide by the area and skip the 1e-5).
2. IoU is computed once between the cared GTs and the kept predictions. At each score threshold the
   predictions with ``score >= thr`` take part, and a pair can match when IoU is strictly > ``match_iou_thr``.
3. Matching is one-to-one. ``strategy='vanilla'`` (the default, mmocr 0.x and the RRC scripts): for each
   GT in order, the first prediction in order that is still free. ``'max_matching'``: a maximum-cardinality
   bipartite matching (augmenting paths; mmocr uses ``scipy.sparse.csgraph.maximum_bipartite_matching``).

Counts are summed over the dataset: P = matched / cared predictions, R = matched / cared GTs,
H = 2PR / (P + R), and H = 0 when P + R = 0. With no cared GT in the whole dataset, R = 1 and P = 0 if
there is any cared prediction, otherwise P = 1. mmocr's ``compute_hmean`` does the same.

Two results are reported and labelled apart. ``precision`` / ``recall`` / ``hmean`` are the values at
the fixed ``score_thr`` (0.5): this is the number to compare across models. ``best_*`` is the best H-mean
over ``pred_score_thrs`` (0.3, 0.4, ..., 0.9), which is what mmocr reports. That value picks its
threshold on the evaluation set, so it is optimistic. Ties go to the lowest threshold, as in mmocr.
Our thresholds are exact decimals. mmocr builds them with ``np.arange(0.3, 0.9, 0.1)``, which gives
0.6000000000000001 and so on, so a score exactly equal to 0.6 ... 0.9 is kept here and dropped there.

Which protocol uses it (``evaluate_text``): ICDAR2015 (quadrilaterals), CTW1500 and DAST1500 (polygons,
common practice), Total-Text's Pascal VOC protocol (IoU > 0.5), and MSRA-TD500. MSRA-TD500's original
protocol matches rotated rectangles by IoU > 0.5 *and* an angle difference < pi/8. Here it is plain polygon
IoU > 0.5 without the angle criterion, as many codebases do, so the numbers are not the original ones.

DetEval (Total-Text)
--------------------
Source: the official ``cs-chan/Total-Text-Dataset``, ``Evaluation_Protocol/Python_scripts/Deteval.py``
(newest revision, fb0f371 "Many to One bug fixed", with ``polygon_fast.py``). Checked against the script.
Parameters are ``tr=0.7``, ``tp=0.6``, ``fsc_k=0.8`` and ``k=2``. Per image:

* Predictions with ``score < score_thr`` are dropped. The official script has no scores: it takes the
  detections as given.
* A detection whose intersection with a don't-care GT, divided by its own area, is > 0.5 is removed. It
  then counts nowhere. The official ``iod`` divides by ``area + 1.0`` (a pixel-scale zero guard); we divide
  by the area, and a zero-area detection gets 0.
* For cared GT g and remaining detection d: sigma[g, d] = round(inter / area(g), 2) (area recall) and
  tau[g, d] = round(inter / area(d), 2) (area precision), as in ``np.round``. A zero area gives 0.

Then three passes. A flagged GT or detection is matched; R-credit and P-credit are summed:

1. **one-to-one**, for each GT g:
   * the row has exactly one d with sigma > tr and exactly one with tau > tp;
   * that d's column has exactly one GT with sigma > tr, and exactly one with tau > tp.

   Credit: R += 1, P += 1. We also require the sigma-candidate and the tau-candidate to be the *same*
   detection. The official script does not check this. The two can differ only when one detection covers
   the GT loosely and another lies tightly inside it; the official script then credits the loose one.
2. **one-to-many** (a split GT). For each unmatched GT g with at least ``k`` detections of sigma > 0, the
   candidates are the unmatched d with tau >= tp.
   * With exactly one candidate, it matches only if sigma >= tr (R += 1, P += 1).
   * With two or more, the GT matches if the sum of their sigma is >= tr: R += fsc_k, and
     P += fsc_k * (number of candidates).
3. **many-to-one** (merged GTs). For each unmatched detection d with at least ``k`` GTs of tau > 0, the
   candidates are the unmatched GTs with **sigma >= tp** (the official script compares sigma with ``tp``
   here, not ``tr``; we keep that because published Total-Text numbers use it).
   * With exactly one candidate, it matches only if tau >= tp and sigma >= tr (R += 1, P += 1).
   * With two or more, d matches if the sum of their tau is >= tp: R += fsc_k * (number of candidates),
     and P += fsc_k.

Summed over the dataset: R = R-credit / cared GTs, P = P-credit / remaining detections. As in the official
script, R = 0 when there is no cared GT, P = 0 when there is no detection, and H = 0 when P + R = 0.
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import shapely
from shapely.errors import GEOSException

__all__ = ['DEFAULT_SCORE_THRS', 'TEXT_PROTOCOLS', 'polygon_iou', 'hmean_iou', 'deteval', 'evaluate_text']

DEFAULT_SCORE_THRS: Tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

# protocol name -> metric; every hmean-iou protocol uses IoU > 0.5 with the don't-care rule above
TEXT_PROTOCOLS: Dict[str, str] = {
    'icdar2015': 'hmean_iou',
    'ctw1500': 'hmean_iou',
    'dast1500': 'hmean_iou',
    'msra_td500': 'hmean_iou',
    'totaltext_iou': 'hmean_iou',
    'totaltext_deteval': 'deteval',
}

_STRATEGIES = ('vanilla', 'max_matching')


# ---------------------------------------------------------------------------------------------------------
# Input checking and geometry


def _check_polygon(polygon: Any, where: str) -> np.ndarray:
    try:
        points = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f'{where} is not numeric ({e}); expected an (N, 2) array of x, y points') from e
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(
            f'{where} has shape {points.shape}; expected an (N, 2) array of x, y points '
            f'(a flat [x0, y0, x1, y1, ...] list becomes one with np.reshape(p, (-1, 2)))')
    if points.shape[0] < 3:
        raise ValueError(f'{where} has {points.shape[0]} point(s); a polygon needs at least 3 (drop it before '
                         'evaluation, as mmocr does for masks that give fewer than 3 contour points)')
    if not np.isfinite(points).all():
        raise ValueError(f'{where} has NaN or infinite coordinates')
    return points


def _to_geometry(points: np.ndarray) -> shapely.Geometry:
    polygon = shapely.Polygon(points)
    if not polygon.is_valid:
        # make_valid keeps every lobe of a self-intersecting ring; a zero-area ring becomes lines (area 0)
        polygon = shapely.make_valid(polygon)
    return polygon


def _geometries(polygons: Sequence[Any], where: str) -> np.ndarray:
    out = np.empty(len(polygons), dtype=object)
    for j, polygon in enumerate(polygons):
        out[j] = _to_geometry(_check_polygon(polygon, f'{where}[{j}]'))
    return out


def _pair_intersection_area(a: shapely.Geometry, b: shapely.Geometry) -> float:
    try:
        return float(shapely.area(shapely.intersection(a, b)))
    except GEOSException:
        # rare robustness failure of the overlay on nearly-degenerate input: retry on cleaned geometries
        try:
            return float(shapely.area(shapely.intersection(a.buffer(0), b.buffer(0))))
        except GEOSException:
            return 0.0


def _intersection_areas(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Intersection areas (len(rows), len(cols)); only pairs whose geometries touch are computed."""
    areas = np.zeros((len(rows), len(cols)), dtype=np.float64)
    if len(rows) == 0 or len(cols) == 0:
        return areas
    # the tree query skips the (many) far-apart pairs of an image before any polygon overlay
    row_idx, col_idx = shapely.STRtree(cols).query(rows, predicate='intersects')
    if len(row_idx) == 0:
        return areas
    try:
        areas[row_idx, col_idx] = shapely.area(shapely.intersection(rows[row_idx], cols[col_idx]))
    except GEOSException:
        for r, c in zip(row_idx, col_idx):
            areas[r, c] = _pair_intersection_area(rows[r], cols[c])
    return areas


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, and 0 where den is 0 (zero-area polygons overlap nothing)."""
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _iou_matrix(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    inter = _intersection_areas(rows, cols)
    union = shapely.area(rows)[:, None] + shapely.area(cols)[None, :] - inter
    return _safe_divide(inter, union)


def polygon_iou(a: Any, b: Any) -> float:
    """Intersection over union of two polygons given as (N, 2) arrays of x, y (N >= 3).

    Self-intersecting polygons are repaired with ``shapely.make_valid``; zero-area polygons give 0.
    """
    ga = _to_geometry(_check_polygon(a, 'polygon a'))
    gb = _to_geometry(_check_polygon(b, 'polygon b'))
    inter = _pair_intersection_area(ga, gb)
    union = ga.area + gb.area - inter
    return float(inter / union) if union > 0 else 0.0


def _check_dataset(preds: Sequence[Mapping[str, Any]],
                   gts: Sequence[Mapping[str, Any]]) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Validate the inputs and return, per image, (pred geometries, scores, GT geometries, GT ignore flags)."""
    if len(preds) != len(gts):
        raise ValueError(f'preds has {len(preds)} image(s) but gts has {len(gts)}; pass one entry per image, '
                         'in the same order, in both lists (an image without detections is '
                         "{'polygons': [], 'scores': []})")
    images = []
    for i, (pred, gt) in enumerate(zip(preds, gts)):
        for name, entry, keys in (('preds', pred, ('polygons', 'scores')), ('gts', gt, ('polygons',))):
            if not isinstance(entry, Mapping):
                raise ValueError(f'{name}[{i}] is a {type(entry).__name__}; expected a dict with keys {keys}')
            missing = [key for key in keys if key not in entry]
            if missing:
                hint = (" (a detector without scores can pass 'scores': np.ones(len(polygons)))"
                        if 'scores' in missing else '')
                raise ValueError(f'{name}[{i}] lacks {missing}; expected keys {keys}{hint}')
        pred_geoms = _geometries(pred['polygons'], f"preds[{i}]['polygons']")
        scores = np.asarray(pred['scores'], dtype=np.float64).reshape(-1)
        if len(scores) != len(pred_geoms):
            raise ValueError(f"preds[{i}] has {len(pred_geoms)} polygon(s) but {len(scores)} score(s); "
                             'give exactly one score per polygon')
        if not np.isfinite(scores).all():
            raise ValueError(f"preds[{i}]['scores'] has NaN or infinite values")
        gt_geoms = _geometries(gt['polygons'], f"gts[{i}]['polygons']")
        ignore = gt.get('ignore')
        ignore = np.zeros(len(gt_geoms), bool) if ignore is None else np.asarray(ignore, dtype=bool).reshape(-1)
        if len(ignore) != len(gt_geoms):
            raise ValueError(f"gts[{i}] has {len(gt_geoms)} polygon(s) but {len(ignore)} ignore flag(s); "
                             'give one flag per polygon (True for a don\'t-care region)')
        images.append((pred_geoms, scores, gt_geoms, ignore))
    return images


def _overlaps_dont_care(preds: np.ndarray, dont_care: np.ndarray, thr: float) -> np.ndarray:
    """True for predictions whose intersection with some don't-care GT, over their own area, is > thr."""
    if len(preds) == 0 or len(dont_care) == 0:
        return np.zeros(len(preds), dtype=bool)
    inter = _intersection_areas(preds, dont_care)
    return (_safe_divide(inter, shapely.area(preds)[:, None]) > thr).any(axis=1)


def _hmean(precision: float, recall: float) -> float:
    return 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


# ---------------------------------------------------------------------------------------------------------
# hmean-iou


def _greedy_matches(candidates: np.ndarray) -> int:
    """mmocr 'vanilla': each GT (row) in order takes the first still-free prediction (column) in order."""
    taken = np.zeros(candidates.shape[1], dtype=bool)
    matches = 0
    for row in candidates:
        free = np.flatnonzero(row & ~taken)
        if len(free):
            taken[free[0]] = True
            matches += 1
    return matches


def _max_matches(candidates: np.ndarray) -> int:
    """Maximum-cardinality bipartite matching size (Kuhn: one breadth-first augmenting-path search per row).

    O(rows * edges), ample for text images (hundreds of instances, few overlaps each); BFS avoids Python's
    recursion limit.
    """
    neighbours = [np.flatnonzero(row).tolist() for row in candidates]
    row_of_col = [-1] * candidates.shape[1]
    col_of_row = [-1] * candidates.shape[0]
    for start, start_cols in enumerate(neighbours):
        if not start_cols:
            continue
        came_from = {}  # column -> the row that reached it on the alternating tree
        frontier = [start]
        end_col = -1
        while frontier and end_col < 0:
            next_frontier = []
            for row in frontier:
                for col in neighbours[row]:
                    if col in came_from:
                        continue
                    came_from[col] = row
                    if row_of_col[col] < 0:
                        end_col = col
                        break
                    next_frontier.append(row_of_col[col])
                if end_col >= 0:
                    break
            frontier = next_frontier
        # flip the path: every row on it trades its matched column for the one that reached it
        col = end_col
        while col >= 0:
            row = came_from[col]
            previous_col = col_of_row[row]
            row_of_col[col], col_of_row[row] = row, col
            col = previous_col
    return sum(c >= 0 for c in col_of_row)


def _rates_mmocr(matches: int, num_gt: int, num_pred: int) -> Tuple[float, float, float]:
    """(precision, recall, hmean) with mmocr's empty-set rules (no GT: recall 1, precision 1 only if no preds)."""
    if num_gt == 0:
        recall = 1.0
        precision = 0.0 if num_pred > 0 else 1.0
    else:
        recall = matches / num_gt
        precision = matches / num_pred if num_pred > 0 else 0.0
    return precision, recall, _hmean(precision, recall)


def hmean_iou(preds: Sequence[Mapping[str, Any]],
              gts: Sequence[Mapping[str, Any]],
              score_thr: float = 0.5,
              match_iou_thr: float = 0.5,
              ignore_precision_thr: float = 0.5,
              strategy: str = 'vanilla',
              pred_score_thrs: Sequence[float] = DEFAULT_SCORE_THRS) -> Dict[str, Any]:
    """ICDAR2015-style hmean-iou over a dataset (see the module docstring for the exact rules).

    Args:
        preds: per image ``{'polygons': [(N, 2) x, y arrays], 'scores': (P,) array}``.
        gts: per image ``{'polygons': [(N, 2) x, y arrays], 'ignore': (G,) bools}`` (``ignore`` optional).
        score_thr: the fixed score threshold of the headline ``precision`` / ``recall`` / ``hmean``.
        match_iou_thr: a prediction and a GT can match when their IoU is strictly greater than this.
        ignore_precision_thr: a prediction is discarded when (its intersection with a don't-care GT) /
            (its area) is strictly greater than this.
        strategy: ``'vanilla'`` (greedy in order) or ``'max_matching'`` (maximum bipartite matching).
        pred_score_thrs: thresholds of the sweep for ``best_*``.

    Returns:
        ``precision``, ``recall``, ``hmean``, ``tp``, ``num_gt``, ``num_pred`` and ``score_thr`` at the fixed
        threshold; ``best_hmean``, ``best_precision``, ``best_recall``, ``best_score_thr`` over the sweep; and
        ``per_threshold``: one dict (``score_thr``, ``precision``, ``recall``, ``hmean``, ``tp``, ``num_pred``)
        per sweep threshold, ascending.
    """
    if strategy not in _STRATEGIES:
        raise ValueError(f'unknown strategy {strategy!r}; use one of {_STRATEGIES}')
    sweep = sorted({float(t) for t in pred_score_thrs})
    if not sweep:
        raise ValueError('pred_score_thrs is empty; give at least one score threshold, e.g. (0.3, ..., 0.9)')
    thresholds = sorted(set(sweep) | {float(score_thr)})
    count_matches = _greedy_matches if strategy == 'vanilla' else _max_matches

    matches = np.zeros(len(thresholds), dtype=np.int64)
    num_pred = np.zeros(len(thresholds), dtype=np.int64)
    num_gt = 0
    for pred_geoms, scores, gt_geoms, ignore in _check_dataset(preds, gts):
        # below every threshold a prediction never counts: skip its geometry work (as mmocr does)
        scored = scores >= thresholds[0]
        pred_geoms, scores = pred_geoms[scored], scores[scored]
        kept = ~_overlaps_dont_care(pred_geoms, gt_geoms[ignore], ignore_precision_thr)
        pred_geoms, scores = pred_geoms[kept], scores[kept]
        cared_gts = gt_geoms[~ignore]
        num_gt += len(cared_gts)
        # one IoU matrix per image; each threshold only selects its columns
        candidates = _iou_matrix(cared_gts, pred_geoms) > match_iou_thr
        for t, thr in enumerate(thresholds):
            above = scores >= thr
            num_pred[t] += int(above.sum())
            matches[t] += count_matches(candidates[:, above])

    table = {}
    for t, thr in enumerate(thresholds):
        precision, recall, hmean = _rates_mmocr(int(matches[t]), num_gt, int(num_pred[t]))
        table[thr] = dict(score_thr=thr, precision=precision, recall=recall, hmean=hmean,
                          tp=int(matches[t]), num_pred=int(num_pred[t]))
    per_threshold = [table[thr] for thr in sweep]
    best = per_threshold[0]
    for row in per_threshold[1:]:
        if row['hmean'] > best['hmean']:  # strict: ties keep the lowest threshold, as mmocr
            best = row
    fixed = table[float(score_thr)]
    return dict(
        precision=fixed['precision'], recall=fixed['recall'], hmean=fixed['hmean'], tp=fixed['tp'],
        num_gt=num_gt, num_pred=fixed['num_pred'], score_thr=float(score_thr),
        best_hmean=best['hmean'], best_precision=best['precision'], best_recall=best['recall'],
        best_score_thr=best['score_thr'], per_threshold=per_threshold,
    )


# ---------------------------------------------------------------------------------------------------------
# DetEval (Total-Text)


def _deteval_credits(sigma: np.ndarray, tau: np.ndarray, tr: float, tp: float, fsc_k: float,
                     k: int) -> Tuple[float, float]:
    """(recall credit, precision credit) of one image from its rounded sigma / tau tables (GT x detection)."""
    num_gt, num_det = sigma.shape
    gt_done = np.zeros(num_gt, dtype=bool)
    det_done = np.zeros(num_det, dtype=bool)
    recall_credit = precision_credit = 0.0

    # 1. one-to-one: a unique qualifying pair in both its row and its column
    for g in range(num_gt):
        sigma_dets = np.flatnonzero(sigma[g] > tr)
        tau_dets = np.flatnonzero(tau[g] > tp)
        if len(sigma_dets) != 1 or len(tau_dets) != 1 or sigma_dets[0] != tau_dets[0]:
            continue
        d = sigma_dets[0]
        if (sigma[:, d] > tr).sum() == 1 and (tau[:, d] > tp).sum() == 1:
            recall_credit += 1.0
            precision_credit += 1.0
            gt_done[g] = det_done[d] = True

    # 2. one-to-many: a GT split into several detections that each lie mostly inside it
    for g in np.flatnonzero(~gt_done):
        if (sigma[g] > 0).sum() < k:
            continue
        dets = np.flatnonzero((tau[g] >= tp) & ~det_done)
        if len(dets) == 1:
            if sigma[g, dets[0]] >= tr:  # a late one-to-one (tau >= tp holds by selection)
                recall_credit += 1.0
                precision_credit += 1.0
                gt_done[g] = det_done[dets[0]] = True
        elif np.sum(sigma[g, dets]) >= tr:  # no candidate gives a sum of 0 < tr
            recall_credit += fsc_k
            precision_credit += fsc_k * len(dets)
            gt_done[g] = True
            det_done[dets] = True

    # 3. many-to-one: several GTs merged into one detection (candidates need sigma >= tp: official)
    for d in np.flatnonzero(~det_done):
        if (tau[:, d] > 0).sum() < k:
            continue
        gts = np.flatnonzero((sigma[:, d] >= tp) & ~gt_done)
        if len(gts) == 1:
            if tau[gts[0], d] >= tp and sigma[gts[0], d] >= tr:
                recall_credit += 1.0
                precision_credit += 1.0
                gt_done[gts[0]] = det_done[d] = True
        elif np.sum(tau[gts, d]) >= tp:
            recall_credit += fsc_k * len(gts)
            precision_credit += fsc_k
            gt_done[gts] = True
            det_done[d] = True
    return recall_credit, precision_credit


def deteval(preds: Sequence[Mapping[str, Any]],
            gts: Sequence[Mapping[str, Any]],
            score_thr: float = 0.5,
            tr: float = 0.7,
            tp: float = 0.6,
            fsc_k: float = 0.8,
            k: int = 2) -> Dict[str, float]:
    """Total-Text DetEval over a dataset (official ``Deteval.py`` rules; see the module docstring).

    Args:
        preds: per image ``{'polygons': [(N, 2) x, y arrays], 'scores': (P,) array}``; detections with
            ``score < score_thr`` are dropped first.
        gts: per image ``{'polygons': [(N, 2) x, y arrays], 'ignore': (G,) bools}`` (``#`` = ignore).
        tr: area-recall threshold (sigma = intersection / GT area).
        tp: area-precision threshold (tau = intersection / detection area).
        fsc_k: credit of a split or merge match.
        k: least number of overlapping partners before a split / merge is considered.

    Returns:
        ``precision``, ``recall``, ``hmean``, ``num_gt`` (cared GTs), ``num_pred`` (detections left after
        the score and don't-care filters), ``recall_credit`` and ``precision_credit``.
    """
    num_gt = num_det = 0
    recall_credit = precision_credit = 0.0
    for pred_geoms, scores, gt_geoms, ignore in _check_dataset(preds, gts):
        dets = pred_geoms[scores >= score_thr]
        dets = dets[~_overlaps_dont_care(dets, gt_geoms[ignore], 0.5)]
        cared_gts = gt_geoms[~ignore]
        num_gt += len(cared_gts)
        num_det += len(dets)
        inter = _intersection_areas(cared_gts, dets)
        sigma = np.round(_safe_divide(inter, shapely.area(cared_gts)[:, None]), 2)
        tau = np.round(_safe_divide(inter, shapely.area(dets)[None, :]), 2)
        r, p = _deteval_credits(sigma, tau, tr, tp, fsc_k, k)
        recall_credit += r
        precision_credit += p
    recall = recall_credit / num_gt if num_gt else 0.0
    precision = precision_credit / num_det if num_det else 0.0
    return dict(precision=precision, recall=recall, hmean=_hmean(precision, recall), num_gt=num_gt,
                num_pred=num_det, recall_credit=recall_credit, precision_credit=precision_credit)


def evaluate_text(preds: Sequence[Mapping[str, Any]],
                  gts: Sequence[Mapping[str, Any]],
                  protocol: str = 'icdar2015',
                  **kwargs: Any) -> Dict[str, Any]:
    """Evaluate with a benchmark's protocol; ``kwargs`` go to `hmean_iou` or `deteval`.

    ``'icdar2015'``, ``'ctw1500'``, ``'dast1500'``, ``'msra_td500'`` (polygon IoU, no angle criterion) and
    ``'totaltext_iou'`` (Total-Text Pascal VOC) use `hmean_iou`; ``'totaltext_deteval'`` uses `deteval`.
    """
    metric: Optional[str] = TEXT_PROTOCOLS.get(protocol)
    if metric is None:
        raise ValueError(f'unknown text protocol {protocol!r}; use one of {sorted(TEXT_PROTOCOLS)}')
    if metric == 'deteval':
        return deteval(preds, gts, **kwargs)
    return hmean_iou(preds, gts, **kwargs)
