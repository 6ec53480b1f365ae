import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip('pycocotools')

from detection.checkpoint import load_detector  # noqa: E402
from detection.engine import TrainConfig, train  # noqa: E402
from detection.evaluation import coco_evaluate  # noqa: E402
from detection.schedule import lr_factor  # noqa: E402
from zoo.errors import InputError  # noqa: E402


def _gt():
    from pycocotools.coco import COCO
    coco = COCO()
    coco.dataset = dict(
        images=[dict(id=1, width=100, height=100), dict(id=2, width=100, height=100)],
        annotations=[dict(id=1, image_id=1, category_id=5, bbox=[10, 10, 40, 40], area=1600, iscrowd=0),
                     dict(id=2, image_id=2, category_id=5, bbox=[50, 50, 30, 30], area=900, iscrowd=0)],
        categories=[dict(id=5, name='thing')])
    coco.createIndex()
    return coco


def test_coco_evaluate_known_ap():
    gt = _gt()
    perfect = [dict(image_id=1, category_id=5, bbox=[10, 10, 40, 40], score=0.9),
               dict(image_id=2, category_id=5, bbox=[50, 50, 30, 30], score=0.8)]
    assert coco_evaluate(gt, perfect)['bbox_mAP'] == pytest.approx(1.0)
    # one of two objects found: recall 0.5 at every IoU -> AP ~0.5 (101-point interpolation)
    half = perfect[:1] + [dict(image_id=2, category_id=5, bbox=[0, 0, 10, 10], score=0.1)]
    assert coco_evaluate(gt, half)['bbox_mAP'] == pytest.approx(0.5, abs=0.01)
    assert coco_evaluate(gt, [])['bbox_mAP'] == 0.0


def test_lr_schedule():
    cfg = TrainConfig(epochs=12, warmup_iters=10, warmup_ratio=0.001, schedule='cosine', cosine_begin_epoch=6,
                      min_lr_ratio=0.05)
    assert lr_factor(0, 100, cfg) == pytest.approx(0.001)
    assert lr_factor(5, 100, cfg) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_factor(10, 100, cfg) == 1.0 and lr_factor(599, 100, cfg) == 1.0
    assert lr_factor(900, 100, cfg) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(1200, 100, cfg) == pytest.approx(0.05)
    step = TrainConfig(epochs=12, warmup_iters=0, schedule='step', steps=(8, 11), gamma=0.1)
    assert [lr_factor(e * 10, 10, step) for e in (0, 8, 11)] == pytest.approx([1, 0.1, 0.01])
    with pytest.raises(ValueError, match='unknown training setting'):
        TrainConfig.from_dict(dict(learning_rate=1))


def test_train_checkpoint_resume_and_logs(tmp_path):
    cfg = dict(model='faster_rcnn', backbone='emov2_1m', data='synthetic', out=str(tmp_path / 'run'),
               synthetic=dict(num_train=4, num_val=2, image_size=64, seed=0), min_size=64, max_size=96,
               batch_size=2, workers=0, epochs=1, warmup_iters=1, lr=1e-3, optimizer='sgd', schedule='step',
               progress=False, log_every=1, ema=True, model_kwargs=dict(
                   anchor_sizes=[(16,), (32,), (64,), (128,), (256,)], rpn_pre_nms_top_n_test=100, out_channels=64,
                   box_batch_size_per_image=64, rpn_post_nms_top_n_train=200,
                   rpn_post_nms_top_n_test=50))
    r = train(cfg)
    out = tmp_path / 'run'
    assert r['iterations'] == 2 and all(math.isfinite(v) for v in r['losses'])
    assert {'bbox_mAP', 'bbox_mAP_50'} <= set(r['metrics'])
    ckpt = torch.load(out / 'last.pt', weights_only=True)
    assert ckpt['epoch'] == 1 and ckpt['iteration'] == 2 and ckpt['ema_full'] is not None  # the EMA, stored once
    assert set(ckpt) >= {'model', 'optimizer', 'scheduler', 'scaler', 'config'}
    assert not list(out.glob('*.tmp*'))
    records = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['type'] for r in records] == ['start', 'train', 'train', 'val']
    assert (out / 'metrics.png').stat().st_size > 0
    preds = json.loads((out / 'predictions_val.json').read_text())
    assert all({'image_id', 'category_id', 'bbox', 'score'} <= set(p) for p in preds)
    # resume: continues from epoch 1 with the saved optimizer / scheduler, to epoch 2
    r2 = train({**cfg, 'epochs': 2, 'resume': True})
    assert r2['iterations'] == 4
    ckpt2 = torch.load(out / 'last.pt', weights_only=True)
    assert ckpt2['epoch'] == 2 and ckpt2['scheduler']['last_epoch'] == 4
    model, saved = load_detector(out / 'last.pt')
    assert saved['model'] == 'faster_rcnn' and model.label_to_cat_id == {1: 1, 2: 2, 3: 3, 4: 4}
    with pytest.raises(InputError, match='cannot resume'):
        train({**cfg, 'out': str(tmp_path / 'other'), 'resume': True})


def test_short_runs_scale_warmup_and_logging():
    from detection.schedule import log_every_for, warmup_iters_for
    short = TrainConfig(epochs=2, warmup_iters=500, log_every=20)
    assert warmup_iters_for(8, short) == 3 and log_every_for(8, short) == 1  # 16 iterations in all
    assert lr_factor(4, 8, short) == 1.0  # warmed up after a fifth of the run, not stuck at 1e-3
    coco = TrainConfig(epochs=12, warmup_iters=500, log_every=20)
    assert warmup_iters_for(7330, coco) == 500 and log_every_for(7330, coco) == 20  # the recipe, unchanged
    capped = TrainConfig(epochs=12, warmup_iters=500, max_iters=100)
    assert warmup_iters_for(7330, capped) == 20


def test_weights_only_checkpoint_is_small_loads_and_refuses_resume(tmp_path):
    cfg = dict(model='faster_rcnn', backbone='emov2_1m', data='synthetic', out=str(tmp_path / 'run'),
               epochs=1, batch_size=2, min_size=64, max_size=96, workers=0, progress=False, eval_every=0,
               synthetic=dict(num_train=2, num_val=2, image_size=64), model_kwargs=dict(out_channels=32), ema=True)
    full = train(dict(cfg, out=str(tmp_path / 'full')))
    light = train(dict(cfg, out=str(tmp_path / 'light'), save_optimizer=False))
    full_size, light_size = (Path(r['checkpoint']).stat().st_size for r in (full, light))
    assert light_size < 0.6 * full_size
    model, _ = load_detector(light['checkpoint'])
    ema = torch.load(light['checkpoint'], weights_only=True)['ema']
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ema.items())  # the EMA weights are the ones loaded
    with pytest.raises(InputError, match='--weights-only'):
        train(dict(cfg, out=str(tmp_path / 'light'), save_optimizer=False, resume=True, epochs=2))
    model, _ = load_detector(full['checkpoint'])  # the full checkpoint's EMA comes from ema_full
    ema_full = torch.load(full['checkpoint'], weights_only=True)['ema_full']
    assert all(torch.equal(v, ema_full['module.' + k]) for k, v in model.state_dict().items() if 'module.' + k in ema_full)
