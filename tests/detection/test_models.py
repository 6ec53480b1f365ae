import pytest
import torch

from detection.models import AlignedMultiScaleRoIAlign
from detection.registry import build_detector, list_detectors


def _batch():
    imgs = [torch.rand(3, 96, 128), torch.rand(3, 64, 96)]
    mask = torch.zeros(1, 96, 128, dtype=torch.uint8)
    mask[0, 20:60, 30:90] = 1
    targets = [
        dict(boxes=torch.tensor([[30., 20, 90, 60]]), labels=torch.tensor([2]), masks=mask),
        dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64),
             masks=torch.zeros(0, 64, 96, dtype=torch.uint8)),  # an empty image
    ]
    return imgs, targets


LOSSES = {
    'mask_rcnn': {'loss_classifier', 'loss_box_reg', 'loss_mask', 'loss_objectness', 'loss_rpn_box_reg'},
    'faster_rcnn': {'loss_classifier', 'loss_box_reg', 'loss_objectness', 'loss_rpn_box_reg'},
    'retinanet': {'classification', 'bbox_regression'},
    'fcos': {'classification', 'bbox_regression', 'bbox_ctrness'},
    'ssdlite': {'classification', 'bbox_regression'},
}


@pytest.mark.parametrize('kind', list_detectors('coco'))  # text: test_mayor.py
def test_train_and_eval_step(kind):
    torch.manual_seed(0)
    small = dict(box_batch_size_per_image=64, rpn_post_nms_top_n_train=200, rpn_post_nms_top_n_test=50) \
        if kind in ('mask_rcnn', 'faster_rcnn') else dict(input_size=128) if kind == 'ssdlite' else {}
    model = build_detector(kind, 'emov2_1m', num_classes=3, min_size=96, max_size=128, out_channels=64,
                           frozen_stages=1, norm_eval=True, **small)
    imgs, targets = _batch()
    model.train()
    losses = model(imgs, targets)
    assert set(losses) == LOSSES[kind]
    sum(losses.values()).backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad]
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    model.eval()
    with torch.no_grad():
        out = model(imgs)
    assert len(out) == 2
    keys = {'boxes', 'labels', 'scores'} | ({'masks'} if kind == 'mask_rcnn' else set())
    assert set(out[0]) == keys
    assert out[0]['boxes'].shape[-1] == 4


def test_mmdet_preset_settings():
    mm = build_detector('mask_rcnn', 'emov2_1m', num_classes=80)
    rh = mm.roi_heads
    assert isinstance(rh.box_roi_pool, AlignedMultiScaleRoIAlign)
    assert (rh.box_roi_pool.sampling_ratio, rh.box_roi_pool.aligned) == (0, True)
    assert rh.mask_roi_pool.output_size == (14, 14) and rh.box_roi_pool.output_size == (7, 7)
    assert mm.rpn._post_nms_top_n['training'] == 1000
    assert rh.box_predictor.cls_score.out_features == 81
    assert mm.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))
    tv = build_detector('faster_rcnn', 'emov2_1m', num_classes=80, preset='torchvision', roi_aligned=True)
    assert (tv.roi_heads.box_roi_pool.sampling_ratio, tv.roi_heads.box_roi_pool.aligned) == (2, True)
    retina = build_detector('retinanet', 'emov2_1m', num_classes=80)
    assert retina.detections_per_img == 100
    assert retina.backbone.fpn.extra_blocks.relu_before_p7 is False
    assert retina.anchor_generator.sizes[0] == (32, 40, 50)


def test_aligned_roi_align_matches_single_level():
    from torchvision.ops import roi_align
    feats = {'0': torch.randn(1, 4, 16, 16)}
    pool = AlignedMultiScaleRoIAlign(['0'], 7, 0, aligned=True)
    boxes = [torch.tensor([[8., 8, 40, 40]])]
    out = pool(feats, boxes, [(64, 64)])
    ref = roi_align(feats['0'], [boxes[0]], 7, 0.25, 0, True)
    torch.testing.assert_close(out, ref)


def test_unknown_kind():
    with pytest.raises(ValueError, match='unknown detector'):
        build_detector('yolo', 'emov2_1m')


def test_ssdlite_levels():
    model = build_detector('ssdlite', 'emov2_1m', num_classes=80)
    assert model.backbone.out_channels_list == [80, 180, 512, 256, 256, 128]  # C4, C5 + the EMOv2 SSDLite neck
    assert model.transform.fixed_size == (320, 320)
    with torch.no_grad():
        feats = model.backbone.eval()(torch.rand(1, 3, 320, 320))
    assert [f.shape[-1] for f in feats.values()] == [20, 10, 5, 3, 2, 1]
