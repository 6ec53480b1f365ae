"""Detection heads on zoo backbones (COCO boxes and masks, MAYOR text detection).

* `detection.backbone`: any zoo / timm `features_only` model -> FPN (`TimmFPNBackbone`), frozen stages,
  norm_eval, pretrained weights through the zoo's weight path; isotropic / fixed-size models refused.
* `detection.models`: `build_detector('mask_rcnn' | 'faster_rcnn' | 'retinanet' | 'fcos' | 'ssdlite' | 'mayor' |
  'text_mask_rcnn', backbone, num_classes)` from torchvision's classes, with mmdet-equivalent settings
  (`preset='mmdet'`).
* `detection.mayor`: MAYOR text detection (adaptive RPN assignment, MLP mask decoder, instance-aware
  mask targets, polygons) and the plain Mask R-CNN text baseline; `detection.text`: the engine's text path.
* `detection.text_data` / `detection.text_synthetic` / `detection.text_eval`: text datasets as COCO, the
  embedded dense-text benchmark, ICDAR2015 hmean-IoU and Total-Text DetEval.
* `detection.mmdet`: `ZooBackbone` for mmdet 3.3 (the `make mmdet` extra), with `configs/mmdet/`.
* `detection.synthetic`: a procedurally drawn COCO-format dataset (`make_synthetic_coco`).
* `detection.data`: COCO datasets (pycocotools), transforms.v2 / tv_tensors, aspect-ratio grouped batches.
* `detection.engine`: training (single process or torchrun DDP), COCOeval, checkpoints, logs, plots.
* `detection.configs/*.yaml`: the EMOv2 RetinaNet / Mask R-CNN 1x and SSDLite recipes
  (`zoo detection train|eval|predict`); `configs/text/`: MAYOR and baseline recipes (`zoo text ...`).

Needs the `detection` extra (`pip install 'vision-zoo[detection]'`: pycocotools, pyyaml, shapely, OpenCV).
"""
