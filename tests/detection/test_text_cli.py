"""`zoo text`: train -> eval -> predict on the embedded dense-text data, convert, configs, and the text
metrics path of the engine."""
import json

import numpy as np
import pytest
import torch

from detection.cli import main as detection_main
from detection.config import TEXT_CONFIG_DIR, list_configs, load_config
from detection.engine import TrainConfig
from detection.text.results import text_metrics, text_predictions
from zoo.cli import main as zoo_main

TINY = ['--set', 'synthetic={num_train: 4, num_test: 2, image_size: 128, seed: 3}', '--set', 'min_size=128',
        '--set', 'max_size=160', '--set', 'batch_size=2', '--set', 'workers=0', '--set', 'eval_every=1',
        '--set', 'model_kwargs.box_detections_per_img=20']


def test_text_configs_load_and_name_real_fields():
    names = list_configs(TEXT_CONFIG_DIR)
    assert {'mayor_synthetic_text', 'text_mask_rcnn_synthetic_text', 'mayor_r50_fpn_160e_ctw1500',
            'text_mask_rcnn_r50_fpn_160e_icdar2015'} <= set(names)
    for name in names:
        cfg = TrainConfig.from_dict(load_config(name))  # unknown keys would raise
        assert cfg.model in ('mayor', 'text_mask_rcnn')
    assert load_config('mayor_r50_fpn_160e_totaltext')['text_protocol'] == 'totaltext_deteval'


@pytest.mark.parametrize('model', ['mayor', 'text_mask_rcnn'])
def test_train_eval_predict(tmp_path, capsys, model):
    out = tmp_path / 'run'
    assert zoo_main(['text', 'train', '--config', f'{model}_synthetic_text', '--out', str(out), '--epochs', '1',
                     '--max-iters', '2', '--no-progress', *TINY]) == 0
    capsys.readouterr()
    log = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    val = [r for r in log if r['type'] == 'val'][-1]
    assert {'precision', 'recall', 'hmean', 'best_hmean', 'best_score_thr'} <= set(val)
    preds = json.loads((out / 'predictions_val.json').read_text())
    assert all({'image_id', 'polygon', 'score'} <= set(p) for p in preds)

    assert detection_main(['eval', '--checkpoint', str(out / 'last.pt'), '--no-progress']) == 0  # the COCO verbs too
    ev = json.loads(capsys.readouterr().out)
    assert 'hmean' in ev and 0.0 <= ev['hmean'] <= 1.0
    assert zoo_main(['text', 'eval', '--checkpoint', str(out / 'last.pt'), '--protocol', 'totaltext_deteval',
                     '--no-progress']) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert 'recall_credit' in fp32
    assert zoo_main(['text', 'eval', '--checkpoint', str(out / 'last.pt'), '--protocol', 'totaltext_deteval',
                     '--no-progress', '--precision', 'bf16', '--out', str(tmp_path / 'eval_bf16')]) == 0
    bf16 = json.loads(capsys.readouterr().out)  # the networks in bf16: the same metrics within 0.05
    assert bf16.keys() == fp32.keys() and all(abs(bf16[k] - fp32[k]) <= 0.05 for k in ('precision', 'recall', 'hmean'))

    pred_dir = tmp_path / 'pred'
    images = out / 'synthetic_text' / 'test'
    assert zoo_main(['text', 'predict', str(images), '--checkpoint', str(out / 'last.pt'), '--out', str(pred_dir),
                     '--score-thresh', '0.0']) == 0
    assert len(list(pred_dir.glob('*_text.png'))) == 2
    assert isinstance(json.loads((pred_dir / 'predictions.json').read_text()), list)
    assert zoo_main(['text', 'predict', str(images), '--checkpoint', str(out / 'last.pt'), '--out',
                     str(tmp_path / 'pred_bf16'), '--score-thresh', '0.0', '--precision', 'bf16']) == 0
    found = json.loads((tmp_path / 'pred_bf16' / 'predictions.json').read_text())
    assert isinstance(found, list) and all(isinstance(r['score'], float) for r in found)


def test_convert_writes_coco(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / 'ic15'
    (root / 'ch4_training_images').mkdir(parents=True)
    (root / 'ch4_training_localization_transcription_gt').mkdir()
    Image.new('RGB', (64, 48)).save(root / 'ch4_training_images' / 'img_1.jpg')
    (root / 'ch4_training_localization_transcription_gt' / 'gt_img_1.txt').write_text(
        '1,1,30,1,30,10,1,10,HELLO\n2,20,40,20,40,30,2,30,###\n')
    assert zoo_main(['text', 'convert', 'icdar2015', str(root), '--split', 'train']) == 0
    coco = json.loads((root / 'annotations' / 'text_train.json').read_text())
    assert len(coco['annotations']) == 2 and sum(a['iscrowd'] for a in coco['annotations']) == 1
    assert "1 don't-care" in capsys.readouterr().out


class _Coco:
    def __init__(self, dataset):
        self.dataset = dataset


class _Dataset:
    def __init__(self, dataset):
        self.coco = _Coco(dataset)


def test_text_metrics_against_ground_truth_polygons():
    square = [10, 10, 50, 10, 50, 30, 10, 30]
    coco = dict(images=[dict(id=1, width=64, height=64, file_name='a.png')], categories=[dict(id=1, name='text')],
                annotations=[dict(id=1, image_id=1, category_id=1, segmentation=[square], iscrowd=0, bbox=[10, 10, 40, 20],
                                  area=800)])
    hit = {1: [dict(polygon=np.array(square, dtype=float).reshape(-1, 2).tolist(), score=0.9)]}
    miss = {1: [dict(polygon=[[0, 40], [8, 40], [8, 60], [0, 60]], score=0.9)]}
    assert text_metrics(_Dataset(coco), hit, 'ctw1500')['hmean'] == 1.0
    assert text_metrics(_Dataset(coco), miss, 'ctw1500')['hmean'] == 0.0


def test_quad_protocols_give_quadrilaterals():
    class M:
        text_settings = dict(polygon_keep='largest')

    probs = torch.zeros(1, 1, 28, 28)
    probs[0, 0, 4:24, 4:24] = 1
    out = dict(boxes=torch.tensor([[10.0, 10.0, 50.0, 30.0]]), scores=torch.tensor([0.8]), mask_probs=probs)
    info = dict(height=64, width=64)
    assert len(text_predictions(M(), out, info, 'icdar2015')[0]['polygon']) == 4
    assert text_predictions(M(), out, info, 'ctw1500')[0]['score'] == pytest.approx(0.8)


@pytest.mark.parametrize('line, names', [
    ('1,1,30,1,30,x,1,10,HELLO', ['gt_img_1.txt, line 2', "non-numeric coordinate 'x'"]),
    ('1,1,30,1,30,nan,1,10,HELLO', ['gt_img_1.txt, line 2', 'non-finite']),
    ('1,1,30', ['gt_img_1.txt, line 2', 'expected x1,y1']),
])
def test_convert_garbled_ground_truth_is_one_line_with_file_and_line(tmp_path, capsys, line, names):
    from PIL import Image

    root = tmp_path / 'ic15'
    (root / 'ch4_training_images').mkdir(parents=True)
    (root / 'ch4_training_localization_transcription_gt').mkdir()
    Image.new('RGB', (64, 48)).save(root / 'ch4_training_images' / 'img_1.jpg')
    (root / 'ch4_training_localization_transcription_gt' / 'gt_img_1.txt').write_text(
        '1,1,30,1,30,10,1,10,HELLO\n' + line + '\n')
    out = root / 'annotations' / 'text_train.json'
    out.parent.mkdir()
    out.write_text('{"kept": true}')
    assert zoo_main(['text', 'convert', 'icdar2015', str(root), '--split', 'train']) == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1 and all(n in err for n in names), err
    assert out.read_text() == '{"kept": true}'  # the earlier conversion is left as it was


@pytest.mark.parametrize('argv, usage', [(['text', 'train'], 'usage: zoo text train'),
                                         (['detection', 'train'], 'usage: zoo detection train'),
                                         (['text', 'eval'], 'usage: zoo text eval')])
def test_verb_usage_names_its_command(argv, usage, capsys):
    with pytest.raises(SystemExit):
        zoo_main(argv + ['--help'])
    assert capsys.readouterr().out.startswith(usage)
    with pytest.raises(SystemExit):
        detection_main(['train', '--help'])
    assert capsys.readouterr().out.startswith('usage: python -m detection train')
