"""Scene-text metrics (`detection.text.metrics`): hand-computed cases with known answers.

Rectangles are written as x-intervals with a fixed height, so every overlap is a length ratio that can be
checked by hand; the expected value of each case is derived in its comment.
"""
import itertools
import math

import numpy as np
import pytest

pytest.importorskip('shapely')

from detection.text.metrics import (  # noqa: E402
    DEFAULT_SCORE_THRS, _max_matches, deteval, evaluate_text, hmean_iou, polygon_iou)


def rect(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def bar(x0, x1, height=10.0):
    """Axis-aligned rectangle [x0, x1] x [0, height]."""
    return rect(x0, 0.0, x1, height)


def pred(polygons, scores=None):
    scores = [0.9] * len(polygons) if scores is None else scores
    return {'polygons': list(polygons), 'scores': np.asarray(scores, dtype=np.float64)}


def gt(polygons, ignore=None):
    ignore = [False] * len(polygons) if ignore is None else ignore
    return {'polygons': list(polygons), 'ignore': np.asarray(ignore, dtype=bool)}


# ------------------------------------------------------------------------------------------------ polygon IoU

def test_polygon_iou_basic_cases():
    unit = rect(0, 0, 1, 1)
    # intersection 0.5, union 1.5
    assert polygon_iou(unit, rect(0.5, 0, 1.5, 1)) == pytest.approx(1 / 3, abs=1e-12)
    assert polygon_iou(unit, unit.copy()) == pytest.approx(1.0, abs=1e-12)
    assert polygon_iou(unit, rect(2, 2, 3, 3)) == 0.0
    # a shared edge only: intersection of zero area
    assert polygon_iou(unit, rect(1, 0, 2, 1)) == 0.0


def test_polygon_iou_degenerate_polygons_give_zero_not_nan():
    collinear = np.array([[0, 0], [1, 1], [2, 2]], dtype=np.float64)
    repeated = np.array([[0.5, 0.5]] * 4)
    for degenerate in (collinear, repeated):
        assert polygon_iou(degenerate, rect(0, 0, 2, 2)) == 0.0
        assert polygon_iou(rect(0, 0, 2, 2), degenerate) == 0.0
        assert polygon_iou(degenerate, degenerate) == 0.0  # union 0: no 0/0


def test_polygon_iou_bow_tie_keeps_both_lobes():
    # the ring crosses itself at (0.5, 0.5): two triangles of area 0.25 each, both inside the unit square.
    # make_valid keeps both (IoU 0.5); buffer(0) would keep one lobe (IoU 0.25)
    bow_tie = np.array([[0, 0], [1, 1], [1, 0], [0, 1]], dtype=np.float64)
    assert polygon_iou(bow_tie, rect(0, 0, 1, 1)) == pytest.approx(0.5, abs=1e-12)
    assert polygon_iou(bow_tie, bow_tie) == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------ hmean-iou

def test_iou_exactly_half_does_not_match_strictly_above_does():
    ground_truth = [gt([bar(0, 2)])]
    exactly_half = hmean_iou([pred([bar(0, 1)])], ground_truth)  # inter 1, union 2
    assert (exactly_half['tp'], exactly_half['precision'], exactly_half['recall'], exactly_half['hmean']) == (
        0, 0.0, 0.0, 0.0)
    above = hmean_iou([pred([bar(0, 1.01)])], ground_truth)  # IoU 0.505
    assert (above['tp'], above['precision'], above['recall'], above['hmean']) == (1, 1.0, 1.0, 1.0)


def test_dont_care_filter():
    dont_care, cared = bar(0, 10), bar(100, 110)
    predictions = [
        bar(0, 6),      # inside the ### region: 60/60 = 1 > 0.5, discarded (not an FP)
        bar(8, 18),     # 20/100 = 0.2: an FP
        bar(5, 15),     # 50/100 = 0.5, not > 0.5: an FP
        bar(100, 110),  # matches the cared GT
    ]
    result = hmean_iou([pred(predictions)], [gt([dont_care, cared], ignore=[True, False])])
    # the ### GT is not counted, 3 predictions count: P = 1/3, R = 1/1, H = 2 * (1/3) / (4/3) = 0.5
    assert result['num_gt'] == 1
    assert result['num_pred'] == 3
    assert result['tp'] == 1
    assert result['precision'] == pytest.approx(1 / 3)
    assert result['recall'] == 1.0
    assert result['hmean'] == pytest.approx(0.5)


def test_prediction_matching_only_a_dont_care_gt_is_not_a_true_positive():
    # a prediction equal to a ### GT is discarded; it cannot match the ignored GT either
    result = hmean_iou([pred([bar(0, 10)])], [gt([bar(0, 10), bar(50, 60)], ignore=[True, False])])
    assert (result['tp'], result['num_pred'], result['num_gt']) == (0, 0, 1)
    assert (result['precision'], result['recall'], result['hmean']) == (0.0, 0.0, 0.0)


def test_greedy_vs_maximum_matching():
    # IoUs (height 10 everywhere): gt0-pred0 9/10, gt1-pred0 8/10, gt0-pred1 7/12, gt1-pred1 5/13 (< 0.5).
    # vanilla: gt0 takes pred0 first, then gt1 has nothing left -> 1 match; max_matching pairs
    # gt0-pred1 and gt1-pred0 -> 2 matches
    gt0, gt1, pred0, pred1 = bar(1, 10), bar(0, 8), bar(0, 10), bar(3, 13)
    assert polygon_iou(gt0, pred0) == pytest.approx(0.9)
    assert polygon_iou(gt1, pred0) == pytest.approx(0.8)
    assert polygon_iou(gt0, pred1) == pytest.approx(7 / 12)
    assert polygon_iou(gt1, pred1) == pytest.approx(5 / 13)
    preds, gts = [pred([pred0, pred1])], [gt([gt0, gt1])]

    vanilla = hmean_iou(preds, gts, strategy='vanilla')
    assert vanilla['tp'] == 1
    assert (vanilla['precision'], vanilla['recall'], vanilla['hmean']) == (0.5, 0.5, 0.5)

    best = hmean_iou(preds, gts, strategy='max_matching')
    assert best['tp'] == 2
    assert (best['precision'], best['recall'], best['hmean']) == (1.0, 1.0, 1.0)


def _brute_force_matching(adjacency):
    rows, cols = adjacency.shape
    best = 0
    for size in range(min(rows, cols), 0, -1):
        for chosen_rows in itertools.combinations(range(rows), size):
            for chosen_cols in itertools.permutations(range(cols), size):
                if all(adjacency[r, c] for r, c in zip(chosen_rows, chosen_cols)):
                    return size
    return best


def test_max_matching_equals_brute_force_on_random_graphs():
    rng = np.random.default_rng(0)
    for _ in range(60):
        shape = tuple(rng.integers(1, 6, size=2))
        adjacency = rng.random(shape) < rng.uniform(0.2, 0.7)
        assert _max_matches(adjacency) == _brute_force_matching(adjacency), adjacency


def test_score_sweep_and_fixed_threshold_are_reported_apart():
    predictions = pred([bar(0, 10), bar(50, 60), bar(80, 90)], scores=[0.9, 0.35, 0.55])
    result = hmean_iou([predictions], [gt([bar(0, 10)])])
    # thr 0.3: 1 TP of 3 -> P 1/3, H 0.5; thr 0.4 and 0.5: 1 of 2 -> H 2/3; thr >= 0.6: 1 of 1 -> H 1.
    # the TP scores exactly 0.9 and is kept at threshold 0.9 (score >= thr)
    assert [row['score_thr'] for row in result['per_threshold']] == list(DEFAULT_SCORE_THRS)
    assert [row['hmean'] for row in result['per_threshold']] == pytest.approx([0.5, 2 / 3, 2 / 3, 1, 1, 1, 1])
    assert [row['num_pred'] for row in result['per_threshold']] == [3, 2, 2, 1, 1, 1, 1]
    # the best drops both FPs; ties go to the lowest threshold
    assert result['best_hmean'] == 1.0
    assert result['best_score_thr'] == 0.6
    assert (result['best_precision'], result['best_recall']) == (1.0, 1.0)
    # the fixed threshold 0.5 still keeps the 0.55 FP
    assert result['score_thr'] == 0.5
    assert (result['tp'], result['num_pred'], result['num_gt']) == (1, 2, 1)
    assert (result['precision'], result['recall']) == (0.5, 1.0)
    assert result['hmean'] == pytest.approx(2 / 3)
    # a fixed threshold outside the sweep is computed too, and stays out of the table
    low = hmean_iou([predictions], [gt([bar(0, 10)])], score_thr=0.2, pred_score_thrs=(0.5, 0.6))
    assert low['precision'] == pytest.approx(1 / 3)
    assert [row['score_thr'] for row in low['per_threshold']] == [0.5, 0.6]


def test_counts_accumulate_over_the_dataset_not_per_image():
    # image 0: 1 TP of 1 pred, 1 GT; image 1: 0 TP, 3 preds, 1 GT. Dataset P = 1/4, R = 1/2 (the mean of
    # per-image precisions would be 1/2)
    preds = [pred([bar(0, 10)]), pred([bar(20, 30), bar(40, 50), bar(60, 70)])]
    gts = [gt([bar(0, 10)]), gt([bar(200, 210)])]
    result = hmean_iou(preds, gts)
    assert (result['precision'], result['recall']) == (0.25, 0.5)
    assert result['hmean'] == pytest.approx(2 * 0.25 * 0.5 / 0.75)


def test_empty_sets_follow_mmocr():
    no_gt_with_pred = hmean_iou([pred([bar(0, 10)])], [gt([])])
    assert (no_gt_with_pred['precision'], no_gt_with_pred['recall'], no_gt_with_pred['hmean']) == (0.0, 1.0, 0.0)
    nothing = hmean_iou([pred([])], [gt([])])
    assert (nothing['precision'], nothing['recall'], nothing['hmean']) == (1.0, 1.0, 1.0)
    no_pred = hmean_iou([pred([])], [gt([bar(0, 10)])])
    assert (no_pred['precision'], no_pred['recall'], no_pred['hmean']) == (0.0, 0.0, 0.0)


def test_zero_area_prediction_is_a_false_positive_not_a_nan():
    collinear = np.array([[0, 0], [5, 5], [10, 10]], dtype=np.float64)
    result = hmean_iou([pred([collinear, bar(0, 10)])], [gt([bar(0, 10), bar(0, 10)], ignore=[True, False])])
    # the real bar lies on the ### copy and is discarded; the zero-area one overlaps nothing: an FP
    assert (result['tp'], result['num_pred']) == (0, 1)
    assert all(math.isfinite(result[key]) for key in ('precision', 'recall', 'hmean', 'best_hmean'))


# ------------------------------------------------------------------------------------------------ DetEval

def band(x0, x1):
    """[x0, x1] x [0, 20]: a text-line-like rectangle."""
    return bar(x0, x1, height=20.0)


def test_deteval_one_to_one():
    # sigma = 95/100 > 0.7, tau = 1 > 0.6
    result = deteval([pred([band(0, 95)])], [gt([band(0, 100)])])
    assert (result['precision'], result['recall'], result['hmean']) == (1.0, 1.0, 1.0)


def test_deteval_split_gt_gets_fsc_k_credit():
    # the first GT is split in two detections: sigma 0.48 each (sum 0.96 >= 0.7), tau 1 each (>= 0.6).
    # recall credit fsc_k = 0.8 over 2 GTs -> R = 0.4; precision credit 2 * 0.8 over 2 detections -> P = 0.8
    result = deteval([pred([band(0, 48), band(52, 100)])], [gt([band(0, 100), band(300, 400)])])
    assert result['recall_credit'] == pytest.approx(0.8)
    assert result['precision_credit'] == pytest.approx(1.6)
    assert result['recall'] == pytest.approx(0.4)
    assert result['precision'] == pytest.approx(0.8)
    assert result['hmean'] == pytest.approx(2 * 0.4 * 0.8 / 1.2)
    # fsc_k is a parameter: with 0.5, R = 0.5 / 2, P = 1.0 / 2
    half = deteval([pred([band(0, 48), band(52, 100)])], [gt([band(0, 100), band(300, 400)])], fsc_k=0.5)
    assert (half['recall'], half['precision']) == pytest.approx((0.25, 0.5))


def test_deteval_merged_gts_get_fsc_k_credit():
    # one detection covers two GTs: sigma 1 each, tau 0.48 each (sum 0.96 >= 0.6). Recall credit
    # 2 * 0.8 over 2 GTs -> R = 0.8; precision credit 0.8 over 2 detections (one is a far FP) -> P = 0.4
    result = deteval([pred([band(0, 100), band(300, 400)])], [gt([band(0, 48), band(52, 100)])])
    assert result['recall'] == pytest.approx(0.8)
    assert result['precision'] == pytest.approx(0.4)
    assert result['hmean'] == pytest.approx(2 * 0.8 * 0.4 / 1.2)


def test_deteval_merge_candidates_need_sigma_at_least_tp_as_in_the_official_script():
    # GT 2 is only 39/60 = 0.65 inside the detection: >= tp (0.6) but < tr (0.7). The official script takes
    # it as a merge candidate: tau 40/89 -> 0.45 and 39/89 -> 0.44, sum 0.89 >= 0.6: both GTs get 0.8
    result = deteval([pred([band(0, 89)])], [gt([band(0, 40), band(50, 110)])])
    assert result['recall'] == pytest.approx(0.8)
    assert result['precision'] == pytest.approx(0.8)


def test_deteval_rounds_sigma_and_tau_to_two_decimals():
    # pieces of 34.6 % each: sigma rounds to 0.35, sum 0.70 >= 0.7 -> matched (unrounded 0.692 would not be)
    matched = deteval([pred([band(0, 34.6), band(60, 94.6)])], [gt([band(0, 100)])])
    assert (matched['recall'], matched['precision']) == pytest.approx((0.8, 0.8))
    # pieces of 34.4 %: 0.34 + 0.34 = 0.68 < 0.7 -> nothing
    unmatched = deteval([pred([band(0, 34.4), band(60, 94.4)])], [gt([band(0, 100)])])
    assert (unmatched['recall'], unmatched['precision'], unmatched['hmean']) == (0.0, 0.0, 0.0)


def test_deteval_dont_care_filter_and_score_threshold():
    detections = pred(
        [band(0, 100),    # TP
         band(210, 290),  # inside the # region: removed, counts nowhere
         band(290, 350),  # 10/60 of it on the # region: kept, an FP
         band(120, 180)],  # score 0.3 < 0.5: dropped
        scores=[0.9, 0.9, 0.9, 0.3])
    result = deteval([detections], [gt([band(0, 100), band(200, 300)], ignore=[False, True])])
    assert (result['num_gt'], result['num_pred']) == (1, 2)
    assert (result['precision'], result['recall']) == (0.5, 1.0)
    assert result['hmean'] == pytest.approx(2 / 3)


def test_deteval_empty_sets_follow_the_official_script():
    result = deteval([pred([band(0, 10)])], [gt([])])
    assert (result['precision'], result['recall'], result['hmean']) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------------------------ dispatch

def test_evaluate_text_dispatch():
    preds = [pred([band(0, 48), band(52, 100)])]
    gts = [gt([band(0, 100)])]
    # hmean-iou: each half has IoU 0.48 -> no match
    for protocol in ('icdar2015', 'ctw1500', 'dast1500', 'msra_td500', 'totaltext_iou'):
        result = evaluate_text(preds, gts, protocol=protocol)
        assert result == hmean_iou(preds, gts)
        assert result['hmean'] == 0.0
    # DetEval credits the split, keyword arguments pass through
    assert evaluate_text(preds, gts, protocol='totaltext_deteval')['recall'] == pytest.approx(0.8)
    assert evaluate_text(preds, gts, protocol='totaltext_deteval', fsc_k=0.5)['recall'] == pytest.approx(0.5)
    assert evaluate_text(preds, gts, protocol='icdar2015', match_iou_thr=0.4)['tp'] == 1


# ------------------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize('preds, gts, message', [
    ([pred([bar(0, 1)])], [], r'preds has 1 image\(s\) but gts has 0'),
    ([pred([bar(0, 1), np.zeros(4)])], [gt([])], r"preds\[0\]\['polygons'\]\[1\] has shape \(4,\).*np.reshape"),
    ([pred([])], [gt([np.zeros((2, 2))])], r"gts\[0\]\['polygons'\]\[0\] has 2 point\(s\).*at least 3"),
    ([pred([bar(0, 1), bar(2, 3)], scores=[0.9])], [gt([])], r'preds\[0\] has 2 polygon\(s\) but 1 score'),
    ([pred([])], [gt([bar(0, 1)], ignore=[False, True])], r'gts\[0\] has 1 polygon\(s\) but 2 ignore flag'),
    ([{'polygons': [bar(0, 1)]}], [gt([])], r"preds\[0\] lacks \['scores'\].*np.ones"),
    ([pred([np.array([[0, 0], [1, np.nan], [1, 1]])])], [gt([])], r"preds\[0\]\['polygons'\]\[0\] has NaN"),
])
def test_malformed_input_raises_a_helpful_error(preds, gts, message):
    with pytest.raises(ValueError, match=message):
        hmean_iou(preds, gts)
    with pytest.raises(ValueError, match=message):
        deteval(preds, gts)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="unknown strategy 'hungarian'"):
        hmean_iou([pred([])], [gt([])], strategy='hungarian')
    with pytest.raises(ValueError, match="unknown text protocol 'icdar2013'"):
        evaluate_text([pred([])], [gt([])], protocol='icdar2013')
    with pytest.raises(ValueError, match=r'polygon a has shape \(3,\)'):
        polygon_iou(np.zeros(3), rect(0, 0, 1, 1))
