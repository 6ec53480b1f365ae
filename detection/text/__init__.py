"""Scene-text detection on the detection engine (`zoo text train | eval | predict | convert | configs`).

A text dataset is a COCO file with one `text` category whose segmentations are polygons and whose
don't-care regions are `iscrowd=1`, so `detection.engine` trains the text detectors as any other detector.

* `detection.text.mayor`: MAYOR (adaptive RPN assignment, MLP mask decoder, instance-aware mask targets)
  and the plain Mask R-CNN text baseline (`build_text_detector`), registered as the 'text' kinds
  'mayor' and 'text_mask_rcnn' of `detection.registry`; detector masks -> polygons.
* `detection.text.data`: ICDAR2015, Total-Text, CTW1500, MSRA-TD500 and DAST1500 readers, converted to COCO.
* `detection.text.synthetic`: the embedded dense-text benchmark (`data=synthetic_text`).
* `detection.text.metrics`: ICDAR2015 hmean-IoU (greedy or bipartite, score sweep), Total-Text DetEval.
* `detection.text.results`: the engine's text path: detections -> polygon results -> metrics.
* `detection/text/configs/*.yaml`: the MAYOR and baseline recipes (`zoo text configs`).

Imports point down: `results` -> `mayor`, `data`, `metrics`; `synthetic` -> `data`; `mayor` -> `detection.registry`.
"""
