"""The optional mmdet engine: zoo backbones in mmdet's registry, our EMOv2 configs, one train step and one
inference of a zoo-backbone Mask R-CNN. Skipped without mmdet, unless ZOO_REQUIRE_MMDET=1 (CI)."""
import os

import pytest
import torch

if os.environ.get('ZOO_REQUIRE_MMDET') == '1':
    import mmdet  # noqa: F401  (CI installs the extra: a missing one is a failure, not a skip)
else:
    pytest.importorskip('mmdet', reason='the mmdet extra is not installed (make mmdet)')

from mmengine.config import Config  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

from detection.mmdet import ZooBackbone, config_path  # noqa: E402

register_all_modules()

CONFIGS = [f'{kind}_emov2_{size}_fpn_1x_coco' for kind in ('mask_rcnn', 'retinanet') for size in ('1m', '2m', '5m', '20m')]


def _config(name):
    cfg = Config.fromfile(config_path(name))
    cfg.model.backbone.pretrained = False
    return cfg


@pytest.mark.parametrize('name', CONFIGS)
def test_configs_are_the_emov2_recipe(name):
    cfg = _config(name)
    bb = cfg.model.backbone
    assert bb.type == 'ZooBackbone' and bb.window_size == 10 and bb.frozen_stages == 1 and bb.norm_eval
    assert cfg.model.neck.in_channels == ZooBackbone.neck_in_channels(bb.model_name, bb.out_indices, window_size=10)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.optimizer.lr == 2e-4
    assert cfg.optim_wrapper.clip_grad.max_norm == 0.1 and 'momentum' not in cfg.optim_wrapper.optimizer
    assert [s.type for s in cfg.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
    assert cfg.train_cfg.max_epochs == 12 and 'detection.mmdet' in cfg.custom_imports.imports


def test_unknown_config_lists_choices():
    with pytest.raises(FileNotFoundError, match='mask_rcnn_emov2_1m_fpn_1x_coco'):
        config_path('mask_rcnn_emov2_3m')


def test_backbone_strides_frozen_stages_and_norm_eval():
    bb = MODELS.build(dict(type='ZooBackbone', model_name='emov2_1m', out_indices=(1, 2, 3, 4), frozen_stages=1,
                           norm_eval=True))
    feats = bb(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == bb.out_channels == [32, 48, 80, 180]
    assert [64 // f.shape[2] for f in feats] == [4, 8, 16, 32]
    bb.train()
    frozen = [n for n, p in bb.named_parameters() if not p.requires_grad]
    assert frozen and any(p.requires_grad for p in bb.parameters())
    bns = [m for m in bb.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(not m.training for m in bns)
    with pytest.raises(IndexError, match='out of range'):
        ZooBackbone('emov2_1m', out_indices=(1, 9))


def test_mask_rcnn_train_step_and_inference():
    from mmengine.optim import build_optim_wrapper
    from mmdet.testing import demo_mm_inputs

    torch.manual_seed(0)
    cfg = _config('mask_rcnn_emov2_1m_fpn_1x_coco')
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    packed = demo_mm_inputs(2, [[3, 128, 160], [3, 96, 128]], num_items=[3, 2], with_mask=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    log = model.train_step(packed, optim)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(log)
    assert all(torch.isfinite(v) for v in log.values())
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any(n.startswith('backbone.') for n in changed) and any(n.startswith('roi_head.mask_head') for n in changed)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith('backbone.') for n in frozen)

    model.eval()
    with torch.no_grad():
        results = model.test_step(packed)
    assert len(results) == 2
    inst = results[0].pred_instances
    assert inst.bboxes.shape[1] == 4 and inst.masks.shape[1:] == (128, 160)
    assert len(inst.scores) == len(inst.bboxes) == len(inst.masks)
