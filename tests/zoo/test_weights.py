"""The weight manifest covers every pretrained tag; convert writes timm's Hub layout; push dry-runs."""
import json

import pytest
import timm
import torch

import segmentation
import zoo
from tests.helpers import to_facenet_names
from zoo.hub import WeightsError
from zoo.weights import load_manifest, pretrained_tags, push, convert

REQUIRED = ('hub_repo', 'file', 'sha256', 'source_url', 'license', 'metric')


def test_manifest_and_pretrained_tags_match_both_ways():
    tags = set(pretrained_tags(zoo.zoo_models() + segmentation.segmentation_models()))
    manifest = load_manifest()
    assert tags, 'no pretrained tags found'
    assert tags == set(manifest), f'without manifest entry: {tags - set(manifest)}; stale: {set(manifest) - tags}'
    for tag, entry in manifest.items():
        assert all(k in entry for k in REQUIRED), f'{tag} lacks {[k for k in REQUIRED if k not in entry]}'
        cfg = zoo.models.get_pretrained_cfg(tag)
        assert entry['source_url'] in (cfg.url, cfg.hf_hub_id and f'https://huggingface.co/{cfg.hf_hub_id}')
        assert entry['license'] == cfg.license
        if entry['sha256'] is not None:
            assert len(entry['sha256']) == 64


def test_convert_then_load_local_dir_and_push_dry_run(tmp_path):
    official = tmp_path / 'official.pt'
    src = timm.create_model('inception_resnet_v1_facenet.vggface2').eval()
    torch.save(to_facenet_names(src.state_dict()), official)  # the facenet-pytorch release layout
    out = tmp_path / 'out'
    digest = convert('inception_resnet_v1_facenet.vggface2', official, out)
    assert len(digest) == 64
    config = json.loads((out / 'config.json').read_text())
    assert config['architecture'] == 'inception_resnet_v1_facenet' and config['num_classes'] == 8631
    card = (out / 'README.md').read_text()
    assert digest in card and '0.9965' in card and 'VGGFace2' in card and 'license: mit' in card

    loaded = timm.create_model(f'local-dir:{out}', pretrained=True).eval()
    x = torch.randn(1, 3, 160, 160)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), src(x))

    assert push(out, 'org/name', dry_run=True) == ['README.md', 'config.json', 'model.safetensors']
    with pytest.raises(WeightsError, match='not a converted weights folder'):
        push(tmp_path, 'org/name', dry_run=True)
