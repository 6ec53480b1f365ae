import json

import pytest
import torch

pytest.importorskip('pycocotools')
yaml = pytest.importorskip('yaml')

from detection.config import apply_overrides, list_configs, load_config  # noqa: E402
from detection.engine import TrainConfig  # noqa: E402
from zoo.errors import InputError  # noqa: E402

SPEC = {'1m': (0.04036, True), '2m': (0.05, True), '5m': (0.05, True), '20m': (0.1, False)}


@pytest.mark.parametrize('name', [n for n in list_configs() if not n.startswith('ssdlite') and 'synthetic' not in n])
def test_recipes_load_and_match_the_spec(name):
    cfg = load_config(name)
    TrainConfig.from_dict(cfg)  # every key is a TrainConfig field
    size = name.split('_emov2_')[1].split('_')[0]
    assert cfg['model'] == name.split('_emov2_')[0] and cfg['backbone'] == f'emov2_{size}'
    assert (cfg['epochs'], cfg['optimizer'], cfg['lr'], cfg['weight_decay'], cfg['grad_clip']) == (12, 'adamw', 2e-4, 0.05, 0.1)
    assert (cfg['min_size'], cfg['max_size'], cfg['warmup_iters'], cfg['cosine_begin_epoch']) == (800, 1333, 500, 6)
    mk = cfg['model_kwargs']
    assert (mk['frozen_stages'], mk['norm_eval'], mk['preset']) == (1, True, 'mmdet')
    assert mk['backbone_kwargs'] == dict(window_size=10, drop_path_rate=SPEC[size][0])
    assert mk['pretrained_backbone'] is SPEC[size][1]


@pytest.mark.parametrize('name', [n for n in list_configs() if n.startswith('ssdlite')])
def test_ssdlite_recipes(name):
    cfg = TrainConfig.from_dict(load_config(name))
    size, res = name.split('_')[2], int(name.split('_')[3])
    assert (cfg.model, cfg.backbone, cfg.model_kwargs['input_size']) == ('ssdlite', f'emov2_{size}', res)
    assert (cfg.epochs, cfg.optimizer, cfg.lr, cfg.batch_size) == (600, 'adamw', 2.4e-3, 24)
    assert cfg.model_kwargs['pretrained_backbone'] is SPEC[size][1]


def test_recipe_builds_the_detector():
    from detection.registry import build_detector
    cfg = load_config('retinanet_emov2_2m_fpn_1x_coco', ['model_kwargs.pretrained_backbone=false'])
    model = build_detector(cfg['model'], cfg['backbone'], num_classes=80, **cfg['model_kwargs'])
    assert model.backbone.in_channels == [48, 120, 200]  # C3-C5 of EMOv2-2M
    assert model.backbone.body.model.stages[2][1].eop.window_size == 10
    assert not any(p.requires_grad for p in model.backbone.body.model.stem.parameters())


def test_overrides_and_base(tmp_path):
    (tmp_path / 'base.yaml').write_text('lr: 0.1\nmodel_kwargs: {preset: mmdet, frozen_stages: 1}\n')
    (tmp_path / 'top.yaml').write_text('_base_: base.yaml\nmodel_kwargs: {frozen_stages: 2}\nepochs: 3\n')
    cfg = load_config(tmp_path / 'top.yaml', ['epochs=5', 'model_kwargs.norm_eval=true', 'steps=[1, 2]'])
    assert cfg == dict(lr=0.1, epochs=5, steps=[1, 2],
                       model_kwargs=dict(preset='mmdet', frozen_stages=2, norm_eval=True))
    with pytest.raises(ValueError, match='key=value'):
        apply_overrides({}, ['epochs'])
    with pytest.raises(InputError, match='no config'):
        load_config('nope')


def test_zoo_command_has_detection_verbs(capsys):
    from zoo.cli import main
    assert main(['detection', 'configs']) == 0
    assert 'mask_rcnn_emov2_1m_fpn_1x_coco' in capsys.readouterr().out


def test_cli_train_predict_eval(tmp_path, capsys, monkeypatch):
    import detection.evaluation
    from zoo.cli import main
    from zoo.precision import autocast
    autocast_calls = []  # the precision each network's forward ran in (fp32 enters no autocast at all)
    monkeypatch.setattr(detection.evaluation, 'autocast',
                        lambda precision, where: autocast_calls.append(precision) or autocast(precision, where))
    out = tmp_path / 'run'
    args = ['detection', 'train', '--model', 'mask_rcnn', '--backbone', 'emov2_1m', '--data', 'synthetic',
            '--epochs', '1', '--out', str(out), '--min-size', '64', '--max-size', '96', '--synthetic-images', '2',
            '--workers', '0', '--no-progress', '--set', 'synthetic.num_val=2', '--set', 'synthetic.image_size=64',
            '--set', 'warmup_iters=1', '--set', 'model_kwargs.box_detections_per_img=5',
            '--set', 'model_kwargs.out_channels=64', '--set', 'model_kwargs.rpn_post_nms_top_n_test=50']
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert 'segm_mAP' in printed['metrics']
    assert main(['detection', 'predict', str(out / 'synthetic' / 'val'), '--checkpoint', str(out / 'last.pt'),
                 '--out', str(tmp_path / 'pred'), '--score-thresh', '0']) == 0
    pngs = sorted((tmp_path / 'pred').glob('*_pred.png'))
    assert len(pngs) == 2
    from PIL import Image
    with Image.open(pngs[0]) as im:
        assert im.mode == 'RGB'
    preds = json.loads((tmp_path / 'pred' / 'predictions.json').read_text())
    assert all('segmentation' in p and 'file_name' in p for p in preds)
    capsys.readouterr()
    assert main(['detection', 'eval', '--checkpoint', str(out / 'last.pt'), '--no-progress']) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert 'bbox_mAP' in fp32 and autocast_calls == []
    # --precision bf16: the networks under bf16 autocast, the same metrics (an untrained model's, near 0) and
    # float32 boxes, scores and masks in the files
    assert main(['detection', 'eval', '--checkpoint', str(out / 'last.pt'), '--no-progress', '--precision', 'bf16',
                 '--out', str(tmp_path / 'eval_bf16')]) == 0
    bf16 = json.loads(capsys.readouterr().out)
    assert set(autocast_calls) == {'bf16'} and len(autocast_calls) >= 4  # backbone, RPN head, box and mask heads
    assert bf16.keys() == fp32.keys() and all(abs(bf16[k] - fp32[k]) <= 0.02 for k in fp32), (fp32, bf16)
    assert json.loads((tmp_path / 'eval_bf16' / 'predictions_eval.json').read_text())
    assert main(['detection', 'predict', str(out / 'synthetic' / 'val'), '--checkpoint', str(out / 'last.pt'),
                 '--out', str(tmp_path / 'pred_bf16'), '--score-thresh', '0', '--precision', 'bf16']) == 0
    preds_bf16 = json.loads((tmp_path / 'pred_bf16' / 'predictions.json').read_text())
    assert preds_bf16 and all('segmentation' in p and isinstance(p['score'], float) for p in preds_bf16)
    with pytest.raises(SystemExit) as refused:  # argparse's choices: exit status 2 and the valid values
        main(['detection', 'eval', '--checkpoint', str(out / 'last.pt'), '--precision', 'fp16'])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "--precision: invalid choice: 'fp16'" in err and 'bf16' in err


def _coco_folder(root, annotations):
    """A COCO root (annotations/instances_{train,val}.json, train/, val/) whose train file holds `annotations`."""
    from PIL import Image
    for split in ('train', 'val'):
        (root / split).mkdir(parents=True)
        Image.new('RGB', (40, 30)).save(root / split / '1.png')
    (root / 'annotations').mkdir()
    good = dict(images=[dict(id=1, file_name='1.png', width=40, height=30)], categories=[dict(id=1, name='a')],
                annotations=[dict(id=1, image_id=1, category_id=1, bbox=[1, 2, 10, 10])])
    (root / 'annotations' / 'instances_val.json').write_text(json.dumps(good))
    (root / 'annotations' / 'instances_train.json').write_text(
        annotations if isinstance(annotations, str) else json.dumps(dict(good, annotations=annotations)))
    return root


@pytest.mark.parametrize('annotations, names', [
    ('{"images": [', ['instances_train.json', 'not valid JSON']),
    ([dict(id=5, image_id=1, category_id=1, bbox=[1, float('nan'), 3, 4])], ['instances_train.json', 'annotation 5']),
    ([dict(id=6, image_id=1, category_id=9, bbox=[1, 2, 3, 4])], ['instances_train.json', 'category_id 9']),
])
def test_cli_train_on_malformed_coco_is_one_line_and_touches_nothing(tmp_path, capsys, annotations, names):
    from zoo.cli import main
    data = _coco_folder(tmp_path / 'coco', annotations)
    out = tmp_path / 'run'
    out.mkdir()
    (out / 'last.pt').write_bytes(b'an earlier run')
    code = main(['detection', 'train', '--model', 'faster_rcnn', '--backbone', 'emov2_1m', '--data', str(data),
                 '--out', str(out), '--no-progress'])
    err = capsys.readouterr().err
    assert code == 2 and 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
    assert all(n in err for n in names), err
    assert sorted(p.name for p in out.iterdir()) == ['last.pt'] and (out / 'last.pt').read_bytes() == b'an earlier run'


def test_cli_eval_and_predict_name_a_bad_checkpoint(tmp_path, capsys):
    from zoo.cli import main
    (tmp_path / 'last.pth').write_bytes(b'')  # a run of an older version, whose file had another name
    code = main(['detection', 'eval', '--checkpoint', str(tmp_path / 'last.pt')])
    err = capsys.readouterr().err
    assert code == 2 and 'last.pt not found (that folder has last.pth)' in err and 'Traceback' not in err
    torch.save({'state_dict': {}}, tmp_path / 'backbone.pth')
    code = main(['detection', 'predict', str(tmp_path), '--checkpoint', str(tmp_path / 'backbone.pth'),
                 '--out', str(tmp_path / 'pred')])
    err = capsys.readouterr().err
    assert code == 2 and 'is not a detection checkpoint' in err and not (tmp_path / 'pred').exists()


def test_python_m_detection_has_the_same_boundary(tmp_path, capsys):
    from detection.cli import main
    assert main(['eval', '--checkpoint', str(tmp_path / 'nope.pth')]) == 2
    assert 'nope.pth not found' in capsys.readouterr().err


@pytest.mark.parametrize('flags, names', [
    (['--backbone', 'emov2_1mm'], ["unknown model 'emov2_1mm'", "did you mean 'emov2_1m'"]),
    (['--min-size', '160', '--max-size', '160'], ['max_size (160) must be greater than min_size (160)']),
    (['--set', 'lr=0'], ['lr must be positive']),
])
def test_cli_train_refuses_unworkable_settings_before_any_data(tmp_path, capsys, flags, names):
    from zoo.cli import main
    out = tmp_path / 'run'
    assert main(['detection', 'train', '--data', 'synthetic', '--out', str(out)] + flags) == 2
    err = capsys.readouterr().err
    assert all(n in err for n in names) and 'Traceback' not in err, err
    assert not out.exists()  # nothing generated, nothing written
