"""Detection heads on zoo backbones (COCO boxes and masks, MAYOR text detection).

* `detection.backbone`: any zoo / timm `features_only` model -> FPN (`TimmFPNBackbone`), frozen stages,
  norm_eval, pretrained weights through the zoo's weight path; isotropic / fixed-size models refused.
* `detection.models`: `build_detector('mask_rcnn' | 'faster_rcnn' | 'retinanet' | 'fcos', backbone, num_classes)`
  from torchvision's classes, with mmdet-equivalent settings (`preset='mmdet'`).
* `detection.synthetic`: a procedurally drawn COCO-format dataset (`make_synthetic_coco`).
* `detection.data`: COCO datasets (pycocotools), transforms.v2 / tv_tensors, aspect-ratio grouped batches.
* `detection.engine`: training (single process or torchrun DDP), COCOeval, checkpoints, logs, plots.
* `detection.configs/*.yaml`: the EMOv2 RetinaNet / Mask R-CNN 1x recipes; `zoo detection train|eval|predict`.

Needs the `detection` extra (`pip install 'vision-zoo[detection]'`: pycocotools, pyyaml).
"""
