"""torchvision detectors on zoo / timm backbones: `build_torchvision_detector(kind, backbone=..., num_classes=...)`,
registered as `detection.registry.build_detector(kind, ...)`.

Kinds (`COCO_KINDS`): `mask_rcnn`, `faster_rcnn`, `retinanet`, `fcos`, `ssdlite`. Each is torchvision's class composed
with a `TimmFPNBackbone` (SSDLite: `TimmSSDLiteBackbone`, C4/C5 plus four extra levels, fixed square
`input_size`, 320 by default); nothing of torchvision is re-implemented except RoIAlign's `aligned` switch
(torchvision's `MultiScaleRoIAlign` has none).

`num_classes` counts object classes (as mmdet); labels are 1..num_classes and 0 is background, so the
torchvision classes are built with `num_classes + 1` (RetinaNet / FCOS then never see label 0, as in
torchvision's own COCO models with their 91 ids).

Where torchvision's defaults differ from mmdet 3.x, the setting is an explicit argument and
`preset='mmdet'` selects mmdet's value (`preset='torchvision'` keeps torchvision's):

| setting | torchvision | mmdet |
|---|---|---|
| RoIAlign `sampling_ratio`, `aligned` | 2, False | 0, True |
| RPN proposals kept after NMS in training | 2000 | 1000 |
| RetinaNet detections per image | 300 | 100 |
| RetinaNet P6 source, ReLU before P7 | P5 or C5, ReLU | C5 (`on_input`), no ReLU |

Anchor sizes are equal in both (R-CNN: 32..512, one per level, ratios 0.5/1/2; RetinaNet: 4 x stride x
2^(0, 1/3, 2/3)); `anchor_sizes=` overrides them (small images want smaller anchors). Not matched:
torchvision's box losses are smooth-L1 (beta 1/9) in R-CNN where mmdet uses L1.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales

from zoo.errors import InputError

from detection.backbone import TimmFPNBackbone, TimmSSDLiteBackbone
from detection.registry import register_detector

__all__ = ['COCO_KINDS', 'PRESETS', 'AlignedMultiScaleRoIAlign', 'build_torchvision_detector']

# the detectors of this module (the text detectors register in `detection.text.mayor`)
COCO_KINDS = ('mask_rcnn', 'faster_rcnn', 'retinanet', 'fcos', 'ssdlite')

PRESETS: Dict[str, Dict[str, Any]] = {
    'torchvision': dict(roi_sampling_ratio=2, roi_aligned=False, rpn_post_nms_top_n_train=2000,
                        retina_detections_per_img=300, p6_from='input', relu_before_p7=True),
    'mmdet': dict(roi_sampling_ratio=0, roi_aligned=True, rpn_post_nms_top_n_train=1000,
                  retina_detections_per_img=100, p6_from='input', relu_before_p7=False),
}


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """`MultiScaleRoIAlign` with RoIAlign's `aligned` switch (mmdet: aligned=True, sampling_ratio=0).

    Level assignment is torchvision's (canonical 224 at level 4), which equals mmdet's
    `finest_scale=56` mapping for four levels.
    """

    def __init__(self, featmap_names: List[str], output_size, sampling_ratio: int, aligned: bool = False, **kwargs):
        super().__init__(featmap_names, output_size, sampling_ratio, **kwargs)
        self.aligned = aligned

    def forward(self, x: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        x_filtered = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                x_filtered, image_shapes, self.canonical_scale, self.canonical_level)
        rois = _convert_to_roi_format(boxes)
        if len(x_filtered) == 1:
            return roi_align(x_filtered[0], rois, self.output_size, self.scales[0], self.sampling_ratio, self.aligned)
        levels = self.map_levels(boxes)
        first = x_filtered[0]
        result = first.new_zeros((len(rois), first.shape[1]) + tuple(self.output_size))
        for level, (feat, scale) in enumerate(zip(x_filtered, self.scales)):
            idx = torch.where(levels == level)[0]
            out = roi_align(feat, rois[idx], self.output_size, scale, self.sampling_ratio, self.aligned)
            result.index_put_((idx,), out.to(result.dtype))
        return result


def _norm_cfg(backbone: TimmFPNBackbone) -> Tuple[List[float], List[float]]:
    cfg = getattr(backbone.body, 'pretrained_cfg', None) or {}
    mean = list(cfg.get('mean', (0.485, 0.456, 0.406)))
    std = list(cfg.get('std', (0.229, 0.224, 0.225)))
    return mean, std


@register_detector(*COCO_KINDS, kind='coco')
def build_torchvision_detector(
        kind: str,
        backbone: str = 'emov2_1m',
        num_classes: int = 80,
        *,
        preset: str = 'mmdet',
        pretrained_backbone: bool = False,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        out_channels: int = 256,
        backbone_kwargs: Optional[Dict[str, Any]] = None,
        anchor_sizes: Optional[Sequence[Sequence[int]]] = None,
        aspect_ratios: Optional[Sequence[float]] = None,
        roi_sampling_ratio: Optional[int] = None,
        roi_aligned: Optional[bool] = None,
        p6_from: Optional[str] = None,
        relu_before_p7: Optional[bool] = None,
        min_size: int = 800,
        max_size: int = 1333,
        **overrides,
) -> nn.Module:
    """A torchvision detector of `kind` on the zoo / timm `backbone`.

    Args:
        kind: 'mask_rcnn', 'faster_rcnn', 'retinanet', 'fcos' or 'ssdlite' (takes `input_size=320`;
            min_size / max_size, anchors, RoI and FPN settings do not apply to it).
        backbone: any model name with `features_only` (see `TimmFPNBackbone`).
        num_classes: object classes, without background.
        preset: 'mmdet' or 'torchvision' defaults for the settings where they differ (table above);
            an explicit argument wins over the preset.
        pretrained_backbone: load the backbone's ImageNet weights through the zoo weight path.
        frozen_stages, norm_eval, out_channels, backbone_kwargs: for `TimmFPNBackbone` / timm.
        anchor_sizes: one tuple of sizes per pyramid level (default: the detector's standard sizes).
        aspect_ratios: anchor height / width ratios (default 0.5, 1, 2).
        roi_sampling_ratio, roi_aligned: RoIAlign settings of the R-CNN heads.
        p6_from, relu_before_p7: RetinaNet / FCOS extra levels.
        min_size, max_size: the detector's internal keep-ratio resize (800, 1333).
        **overrides: passed to the torchvision class (e.g. box_detections_per_img, score_thresh,
            rpn_post_nms_top_n_train, detections_per_img, image_mean).
    """
    if kind not in COCO_KINDS:
        raise InputError(f"unknown detector '{kind}'; choose from {', '.join(COCO_KINDS)}")
    if preset not in PRESETS:
        raise InputError(f"unknown preset '{preset}'; choose from {', '.join(PRESETS)}")
    aspect_ratios = (0.5, 1.0, 2.0) if aspect_ratios is None else aspect_ratios
    p = dict(PRESETS[preset])
    for key, value in (('roi_sampling_ratio', roi_sampling_ratio), ('roi_aligned', roi_aligned),
                       ('p6_from', p6_from), ('relu_before_p7', relu_before_p7)):
        if value is not None:
            p[key] = value
    bkw = dict(backbone_kwargs or {})
    if kind == 'ssdlite':
        return _build_ssdlite(backbone, num_classes, frozen_stages, norm_eval, pretrained_backbone, bkw,
                              input_size=overrides.pop('input_size', 320), **overrides)
    common = dict(out_channels=out_channels, frozen_stages=frozen_stages, norm_eval=norm_eval,
                  pretrained=pretrained_backbone, **bkw)

    if kind in ('mask_rcnn', 'faster_rcnn'):
        body = TimmFPNBackbone(backbone, strides=(4, 8, 16, 32), extra='pool', **common)
        levels = 5
        sizes = tuple(tuple(s) for s in anchor_sizes) if anchor_sizes else tuple((32 * 2 ** i,) for i in range(levels))
    else:
        fcos = kind == 'fcos'
        # mmdet FCOS: P6 from P5 with a ReLU before P7 (add_extra_convs='on_output', relu_before_extra_convs)
        body = TimmFPNBackbone(
            backbone, strides=(8, 16, 32), extra='p6p7',
            p6_from=('output' if fcos and p6_from is None else p['p6_from']),
            relu_before_p7=(True if fcos and relu_before_p7 is None else p['relu_before_p7']), **common)
        levels = 5
        if anchor_sizes:
            sizes = tuple(tuple(s) for s in anchor_sizes)
        elif fcos:
            sizes = tuple((8 * 2 ** i,) for i in range(levels))  # one point per location: 8..128
        else:
            sizes = tuple(tuple(int(x * 2 ** (k / 3)) for k in range(3)) for x in (32, 64, 128, 256, 512))
    if len(sizes) != levels:
        raise InputError(f'anchor_sizes needs one tuple per pyramid level ({levels}), got {len(sizes)}')

    mean, std = _norm_cfg(body)
    kwargs: Dict[str, Any] = dict(min_size=min_size, max_size=max_size, image_mean=mean, image_std=std)
    if kind in ('mask_rcnn', 'faster_rcnn'):
        anchor_gen = AnchorGenerator(sizes, (tuple(aspect_ratios),) * levels)
        names = ['0', '1', '2', '3']
        kwargs.update(
            rpn_anchor_generator=anchor_gen,
            rpn_post_nms_top_n_train=p['rpn_post_nms_top_n_train'],
            box_roi_pool=AlignedMultiScaleRoIAlign(names, 7, p['roi_sampling_ratio'], p['roi_aligned']),
        )
        if kind == 'mask_rcnn':
            kwargs['mask_roi_pool'] = AlignedMultiScaleRoIAlign(names, 14, p['roi_sampling_ratio'], p['roi_aligned'])
        kwargs.update(overrides)
        cls = MaskRCNN if kind == 'mask_rcnn' else FasterRCNN
        model = cls(body, num_classes=num_classes + 1, **kwargs)
    elif kind == 'retinanet':
        anchor_gen = AnchorGenerator(sizes, (tuple(aspect_ratios),) * levels)
        kwargs.update(anchor_generator=anchor_gen, detections_per_img=p['retina_detections_per_img'])
        kwargs.update(overrides)
        model = RetinaNet(body, num_classes=num_classes + 1, **kwargs)
    else:
        anchor_gen = AnchorGenerator(sizes, ((1.0,),) * levels)
        kwargs.update(anchor_generator=anchor_gen)
        kwargs.update(overrides)
        model = FCOS(body, num_classes=num_classes + 1, **kwargs)
    model.detector_kind = kind
    model.num_object_classes = num_classes
    return model


def _build_ssdlite(backbone: str, num_classes: int, frozen_stages: int, norm_eval: bool, pretrained: bool,
                   backbone_kwargs: Dict[str, Any], input_size: int = 320, **overrides) -> nn.Module:
    """torchvision's SSDLite (fixed square input, `input_size` 320 as the EMOv2 "300x300" rows, or
    512) with torchvision's ssdlite320 settings: 6 levels, ratios [2, 3], box scales 0.2-0.95,
    score 0.001, NMS 0.55, 300 detections; images normalised with the backbone's mean / std."""
    from functools import partial

    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead

    body = TimmSSDLiteBackbone(backbone, frozen_stages=frozen_stages, norm_eval=norm_eval, pretrained=pretrained,
                               **backbone_kwargs)
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    head = SSDLiteHead(body.out_channels_list, anchors.num_anchors_per_location(), num_classes + 1, norm)
    mean, std = _norm_cfg(body)
    kwargs: Dict[str, Any] = dict(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300,
                                  image_mean=mean, image_std=std)
    kwargs.update(overrides)
    model = SSD(body, anchors, (input_size, input_size), num_classes + 1, head=head, **kwargs)
    model.detector_kind = 'ssdlite'
    model.num_object_classes = num_classes
    return model
