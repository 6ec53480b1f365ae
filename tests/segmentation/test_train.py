"""Synthetic faces, folder datasets, metrics, checkpoints / resume, and that training learns."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from segmentation.data import FaceParsingFolder, SyntheticFaces, collate, render_synthetic_faces, warp_sample
from segmentation.train import build_model, confusion_matrix, evaluate, scores, train
from zoo.cli import main


def test_synthetic_faces_are_deterministic_and_complete():
    ds = SyntheticFaces(4, size=(96, 80), seed=3)
    a, b = ds[2], ds[2]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a['image'].shape == (3, 96, 80) and a['labels'].shape == (96, 80)
    assert set(a['labels'].unique().tolist()) == set(range(11))  # every part is drawn
    x1, y1, x2, y2 = a['box'].tolist()
    face = (a['labels'] > 0) & (a['labels'] < 10)
    ys, xs = torch.nonzero(face, as_tuple=True)
    # the box is the face's bounding box, within the 5% jitter
    assert abs(xs.min().item() - x1) < 0.1 * (x2 - x1) and abs(ys.max().item() - y2) < 0.1 * (y2 - y1)


def test_warp_sample_keeps_labels_integral():
    batch = collate([SyntheticFaces(2)[i] for i in range(2)])
    warped, labels = warp_sample(batch['image'], batch['labels'], batch['box'], (32, 40))
    assert warped.shape == (2, 3, 32, 40) and labels.shape == (2, 32, 40) and labels.dtype == torch.long
    assert set(labels.unique().tolist()) <= set(range(11)) and (labels == 6).any()


def test_scores():
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 0])
    s = scores(confusion_matrix(pred, target, 4))
    # class 1: TP 2, FP 1, FN 0 -> F1 0.8; class 2: TP 1, FN 1 -> 2/3; class 3 unseen (nan, left out)
    assert s['f1'][1] == pytest.approx(0.8) and s['f1'][2] == pytest.approx(2 / 3)
    assert np.isnan(s['f1'][3])
    assert s['mean_f1'] == pytest.approx((0.8 + 2 / 3) / 2)
    assert s['miou'] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_folder_dataset_layouts(tmp_path):
    rng = np.random.default_rng(0)
    for split in ('train', 'test'):
        (tmp_path / 'ibug' / split / 'images').mkdir(parents=True)
        (tmp_path / 'ibug' / split / 'labels').mkdir(parents=True)
        img, lab, _ = render_synthetic_faces(rng, (64, 64))
        Image.fromarray(img).save(tmp_path / 'ibug' / split / 'images' / 'a.jpg')
        Image.fromarray(lab.astype(np.uint8)).save(tmp_path / 'ibug' / split / 'labels' / 'a.png')
    (tmp_path / 'ibug' / 'test' / 'boxes.json').write_text(json.dumps({'a': [1, 2, 30, 40]}))
    train_ds = FaceParsingFolder(tmp_path / 'ibug', 'train')
    item = train_ds[0]
    assert item['image'].shape == (3, 64, 64) and item['labels'].max() == 10 and train_ds.num_classes == 11
    assert item['box'][2] > item['box'][0]
    assert FaceParsingFolder(tmp_path / 'ibug', 'test')[0]['box'].tolist() == [1, 2, 30, 40]

    (tmp_path / 'celeb' / 'CelebA-HQ-img').mkdir(parents=True)
    (tmp_path / 'celeb' / 'labels').mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'celeb' / 'CelebA-HQ-img' / '0.jpg')
    lab19 = np.arange(64).reshape(8, 8) % 19
    Image.fromarray(lab19.astype(np.uint8)).save(tmp_path / 'celeb' / 'labels' / '0.png')
    celeb = FaceParsingFolder(tmp_path / 'celeb', layout='celebamask')[0]['labels']
    assert celeb.max() <= 10 and celeb.reshape(-1)[13] == 10 and celeb.reshape(-1)[2] == 6  # hair, nose


def test_checkpoint_resume_and_cli(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model('rtnet_tiny')
    data = SyntheticFaces(8, size=(64, 64))
    first = train(model, data, size=32, steps=2, batch_size=4, out=tmp_path, log_every=0)
    assert (tmp_path / 'last.pt').is_file() and not list(tmp_path.glob('.*.tmp'))
    state = torch.load(tmp_path / 'last.pt', weights_only=True)
    assert state['step'] == 2 and len(state['losses']) == 2
    resumed = train(build_model('rtnet_tiny'), data, size=32, steps=3, batch_size=4, out=tmp_path, resume=True,
                    log_every=0)
    assert resumed['step'] == 3 and resumed['losses'][:2] == first['losses']
    assert main(['train-faces', '--data', 'synthetic', '--steps', '1', '--batch-size', '2', '--size', '32',
                 '--train-len', '4', '--val-len', '2', '--out', str(tmp_path / 'cli')]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out['steps'] == 1 and 0 <= out['val']['mean_f1'] <= 1


def test_training_lowers_loss_and_beats_chance():
    """A small RTNet on 32 x 32 warps of 64 x 64 synthetic faces, 25 steps (~10 s on 2 free cores)."""
    torch.manual_seed(0)
    model = build_model('rtnet_tiny')
    val = SyntheticFaces(16, size=(64, 64), seed=99)
    val_loader = torch.utils.data.DataLoader(val, batch_size=16, collate_fn=collate)
    before = evaluate(model, val_loader, 32, 11, 'cpu')
    result = train(model, SyntheticFaces(200, size=(64, 64)), val, size=32, steps=25, batch_size=8, lr=5e-3,
                   log_every=0)
    losses = result['losses']
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5]), losses
    # chance: uniform random labels score 2 p / (11 p + 1) F1 on a class of pixel share p; all-background 0
    shares = torch.bincount(torch.stack([val[i]['labels'] for i in range(len(val))]).reshape(-1), minlength=11)
    p = shares[1:].double() / shares.sum()
    chance = (2 * p / (11 * p + 1)).mean().item()
    assert chance < 0.06
    assert result['val']['mean_f1'] > max(0.12, chance + 0.08, before['mean_f1'] + 0.08), (
        chance, before['mean_f1'], result['val'])
