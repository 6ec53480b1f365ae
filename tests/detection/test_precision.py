"""`--precision bf16` for detection predict / eval: the detector's networks run under `zoo.precision.autocast`,
box decoding and the outputs stay float32, and the detections match fp32's."""
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

pytest.importorskip('pycocotools')

from detection.evaluation import NETWORKS, autocast_networks, predict_images  # noqa: E402
from detection.registry import build_detector, list_detectors  # noqa: E402
from zoo.errors import InputError  # noqa: E402

CPU = torch.device('cpu')


def _images():
    from detection.synthetic import synthetic_image
    rng = np.random.default_rng(0)
    return [torch.from_numpy(synthetic_image(rng, (96, 128), crowd_prob=0, empty_prob=0)[0]).permute(2, 0, 1) / 255.
            for _ in range(2)]


def _decided_mask_rcnn():
    """Mask R-CNN on a random ResNet-18 whose heads are drawn wider than torchvision's init, so that scores spread
    and boxes move with the input (a fresh detector scores every box alike, and ties reorder under any rounding)."""
    torch.manual_seed(0)
    model = build_detector('mask_rcnn', 'resnet18', num_classes=3, min_size=96, max_size=128, out_channels=64,
                           rpn_post_nms_top_n_test=50).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith('backbone') and p.ndim > 1:
                p.normal_(0, 0.02)
    return model


def test_bf16_runs_the_networks_in_bf16_and_decodes_boxes_in_fp32():
    model = _decided_mask_rcnn()
    images = _images()
    conv_dtypes, decoded = [], []
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda m, i, o: conv_dtypes.append(o.dtype))
    decode = model.roi_heads.box_coder.decode
    model.roi_heads.box_coder.decode = lambda codes, boxes: decoded.append((codes.dtype, boxes[0].dtype)) or \
        decode(codes, boxes)
    fp32 = predict_images(model, images, CPU)
    bf16 = predict_images(model, images, CPU, 'bf16')
    assert conv_dtypes == [torch.float32, torch.bfloat16]
    assert decoded == [(torch.float32, torch.float32)] * 2  # the box arithmetic stays fp32 under bf16 too
    assert 'forward' not in vars(model.backbone)  # the networks' own forwards are back
    for out in bf16:
        assert {k: v.dtype for k, v in out.items()} == dict(boxes=torch.float32, labels=torch.int64,
                                                           scores=torch.float32, masks=torch.float32)
    # the ten best fp32 detections of each image against their best bf16 match (same label): measured here,
    # every IoU > 0.56 (19 of 20 > 0.99), |score difference| <= 0.0066 (median 0.00015); the scores span 0.18-0.30
    ious, score_diffs = [], []
    for a, b in zip(fp32, bf16):
        iou = box_iou(a['boxes'][:10], b['boxes'])
        iou = torch.where(a['labels'][:10, None] == b['labels'][None], iou, torch.zeros_like(iou))
        best, match = iou.max(1)
        ious.append(best)
        score_diffs.append((a['scores'][:10] - b['scores'][match]).abs())
    ious, score_diffs = torch.cat(ious), torch.cat(score_diffs)
    assert len(ious) == 20 and torch.cat([a['scores'] for a in fp32]).std() > 0.02
    assert (ious > 0.9).float().mean() >= 0.8 and ious.min() > 0.4, ious
    assert 0 < score_diffs.max() < 0.03, score_diffs  # bf16 did change the numbers, a little


@pytest.mark.parametrize('kind', list_detectors())
def test_every_parameter_is_in_a_network_that_bf16_autocasts(kind):
    """A detector kind whose layers lay outside `NETWORKS` would run them in fp32 under --precision bf16."""
    model = build_detector(kind, 'emov2_1m', num_classes=1 if kind in list_detectors('text') else 3,
                           pretrained_backbone=False)
    present = [n for n in NETWORKS if _has(model, n)]
    outside = [n for n, _ in model.named_parameters() if not any(n.startswith(p + '.') for p in present)]
    assert outside == [] and 'backbone' in present


def _has(model, name):
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def test_fp32_changes_nothing_and_a_bad_precision_is_refused():
    model = build_detector('retinanet', 'emov2_1m', num_classes=3, min_size=64, max_size=64).eval()
    with autocast_networks(model, 'fp32'):
        assert 'forward' not in vars(model.backbone)
    with pytest.raises(InputError, match='fp16'):
        predict_images(model, _images(), CPU, 'fp16')
