"""Detection heads on zoo backbones: COCO boxes and masks (`detection.*`), scene text (`detection.text`).

Layout (imports point down the list; `tests/detection/test_structure.py` checks there is no cycle):

* `detection.registry`: one registry of detector kinds. `build_detector(name, backbone, num_classes, ...)`,
  `list_detectors(kind=None | 'coco' | 'text')`, `@register_detector(*names, kind=...)`; the providers
  (`detection.models`, `detection.text.mayor`) register themselves and are imported on the first lookup.
* `detection.backbone`: any zoo / timm `features_only` model -> FPN (`TimmFPNBackbone`), frozen stages,
  norm_eval, pretrained weights through the zoo's weight path; isotropic / fixed-size models refused.
* `detection.models`: the COCO kinds 'mask_rcnn' | 'faster_rcnn' | 'retinanet' | 'fcos' | 'ssdlite' from
  torchvision's classes, with mmdet-equivalent settings (`preset='mmdet'`).
* `detection.data`: COCO datasets (pycocotools), transforms.v2 / tv_tensors, aspect-ratio grouped batches;
  `detection.synthetic`: a procedurally drawn COCO-format dataset (`make_synthetic_coco`).
* The engine, one concern a file: `detection.distributed` (process group, device, the rank's loader),
  `detection.schedule` (optimizer, warm-up and lr schedule), `detection.checkpoint` (atomic `last.pt`,
  `load_detector`), `detection.evaluation` (predictions, COCOeval, the text metrics' glue) and
  `detection.engine` (`TrainConfig`, data resolution, the training loop, metrics log and plot).
* `detection.config` + `detection/configs/*.yaml`: the EMOv2 RetinaNet / Mask R-CNN 1x and SSDLite recipes.
* `detection.text`: scene-text detection (MAYOR and the Mask R-CNN baseline, text datasets, the synthetic
  dense-text benchmark, ICDAR2015 / DetEval metrics, its recipes); see its docstring.
* `detection.cli`: `zoo detection ...` and `zoo text ...` verbs (the `zoo.commands` entry point).
* `detection.mmdet`: `ZooBackbone` for mmdet 3.3 (the `make mmdet` extra), with `configs/mmdet/`.

Needs the `detection` extra (`pip install 'vision-zoo[detection]'`: pycocotools, pyyaml, shapely, OpenCV).
"""
