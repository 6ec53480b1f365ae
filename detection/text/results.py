"""Scene-text detection on the detection engine: polygons from detector outputs, text metrics, and the
`zoo text train | eval | predict | configs` verbs.

A text dataset is a COCO file with one `text` category whose segmentations are polygons and whose
don't-care regions are `iscrowd=1` (`detection.text.data` writes ICDAR2015, Total-Text, CTW1500,
MSRA-TD500 and DAST1500 that way; `data=synthetic_text` writes the embedded dense-text benchmark), so
`detection.engine` trains the text detectors (`detection.text.mayor`) as any other detector. Evaluation
traces each detection's mask to a polygon (`detections_to_polygons`, with the model's `polygon_keep`;
quadrilaterals for the protocols in `QUAD_PROTOCOLS`) and scores the polygons with `detection.text.metrics`
under the run's `text_protocol`.
"""
from typing import Any, Dict, List, Mapping

import numpy as np

from detection.text.mayor import detections_to_polygons

__all__ = ['QUAD_PROTOCOLS', 'text_predictions', 'text_metrics']

# benchmarks whose ground truth is quadrilaterals: detections become minAreaRect corners (spec §3.6)
QUAD_PROTOCOLS = ('icdar2015', 'msra_td500')


def text_predictions(model, output: Mapping[str, Any], image_info: Mapping[str, Any],
                     protocol: str = 'icdar2015') -> List[Dict[str, Any]]:
    """One image's detections as JSON-ready `{'polygon': [[x, y], ...], 'score': s}` entries: polygons,
    or quadrilaterals for the protocols in `QUAD_PROTOCOLS`."""
    keep = getattr(model, 'text_settings', {}).get('polygon_keep', 'largest')
    found = detections_to_polygons(output, (int(image_info['height']), int(image_info['width'])), keep=keep,
                                   mode='quad' if protocol in QUAD_PROTOCOLS else 'poly')
    return [dict(polygon=np.round(p, 2).tolist(), score=round(float(s), 5))
            for p, s in zip(found['polygons'], found['scores'])]


def text_metrics(dataset, per_image: Mapping[int, List[Dict[str, Any]]], protocol: str = 'icdar2015') -> Dict[str, Any]:
    """Precision / recall / H-mean of `per_image` predictions (as `text_predictions` gives them) against
    the polygons of `dataset` (a `CocoDetection` of a text COCO file), on the images predicted."""
    from detection.text.data import coco_to_text_gts
    from detection.text.metrics import evaluate_text

    gts = [g for g in coco_to_text_gts(dataset.coco.dataset) if g['image_id'] in per_image]
    preds = []
    for g in gts:
        entries = per_image[g['image_id']]
        preds.append(dict(polygons=[np.asarray(e['polygon'], dtype=np.float32) for e in entries],
                          scores=np.asarray([e['score'] for e in entries], dtype=np.float32)))
    return evaluate_text(preds, gts, protocol=protocol)
