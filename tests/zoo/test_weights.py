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


@pytest.fixture
def manifest_copy(tmp_path, monkeypatch):
    """A writable copy of the manifest, put where the loaders and convert look."""
    import zoo.hub
    copy = tmp_path / 'manifest.json'
    copy.write_text(zoo.hub.MANIFEST.read_text())
    monkeypatch.setattr(zoo.hub, 'MANIFEST', copy)
    return copy


def test_every_tag_names_the_hub_repo_its_converted_file_is_meant_for():
    for tag, entry in load_manifest().items():
        assert entry['hub_repo'] == f'vision-zoo/{tag}' and 'converted_sha256' in entry


def test_convert_records_sha256_and_loaders_verify_it(tmp_path, manifest_copy, capsys):
    from zoo.cli import main
    from zoo.hub import sha256sum, url_cache_path

    tag = 'inception_resnet_v1_facenet.vggface2'
    entry = load_manifest(manifest_copy)[tag]
    official = tmp_path / entry['file']  # the official file name: its digest is recorded
    src = timm.create_model(tag).eval()
    torch.save(to_facenet_names(src.state_dict()), official)
    assert main(['weights', 'convert', tag, '--checkpoint', str(official), '--out', str(tmp_path / 'out')]) == 0
    assert 'recorded in' in capsys.readouterr().out
    recorded = load_manifest(manifest_copy)[tag]
    assert recorded['sha256'] == sha256sum(official)
    assert recorded['converted_sha256'] == sha256sum(tmp_path / 'out' / 'model.safetensors')

    # the torch hub cache holds the official file: it loads; altered, it is refused before it is read
    cached = url_cache_path(timm.models.get_pretrained_cfg(tag).url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(official.read_bytes())
    timm.create_model(tag, pretrained=True)
    cached.write_bytes(official.read_bytes() + b'\0')
    with pytest.raises(WeightsError, match=r'sha256 .* not the .*manifest\.json records'):
        timm.create_model(tag, pretrained=True)

    # another file under the official name is refused by convert, before anything is written
    torch.save(to_facenet_names(timm.create_model(tag).state_dict()), official)
    with pytest.raises(WeightsError, match='not the .* records'):
        convert(tag, official, tmp_path / 'other', manifest=manifest_copy)
    assert not (tmp_path / 'other').exists()
    # a file of another name is the user's own: converted, nothing recorded
    mine = tmp_path / 'mine.pt'
    mine.write_bytes(official.read_bytes())
    convert(tag, mine, tmp_path / 'mine', manifest=manifest_copy)
    assert load_manifest(manifest_copy)[tag] == recorded
