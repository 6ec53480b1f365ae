"""Weights through timm's real loading path, offline: Hugging Face cache, torch hub cache, local files,
and a clear error for every way a load fails."""
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

from zoo.hub import WeightsError, unwrap_state_dict, url_cache_path
from zoo.models.inception_resnet import checkpoint_filter_fn
from zoo.testing import fixtures_root, has_fixture, load_fixture, make_hf_cache, relative_error

TAG = 'inception_resnet_v1_facenet.vggface2'
URL_FILE = '20180402-114759-vggface2.pt'


@pytest.fixture(scope='module')
def vggface2():
    if not has_fixture('inception_resnet_v1_vggface2'):
        pytest.skip(f'fixture inception_resnet_v1_vggface2 not found under {fixtures_root()} (set ZOO_FIXTURES)')
    return load_fixture('inception_resnet_v1_vggface2')


def _logits_error(model, fx) -> float:
    with torch.inference_mode():
        return relative_error(model.eval()(fx['inputs']['x']), fx['expected']['logits'])


def test_url_tag_loads_official_file_from_torch_hub_cache_offline(vggface2):
    # the official release file, as facenet-pytorch saved it (its key names), where torch hub keeps downloads
    path = url_cache_path(timm.models.get_pretrained_cfg(TAG).url)
    assert path.name == URL_FILE
    path.parent.mkdir(parents=True)
    torch.save(vggface2['state_dict'], path)
    model = timm.create_model(TAG, pretrained=True)
    assert _logits_error(model, vggface2) <= 1e-4


def test_hf_hub_cache_offline(vggface2, tmp_path):
    model = timm.create_model(TAG)
    model.load_state_dict(checkpoint_filter_fn(vggface2['state_dict'], model))
    make_hf_cache('zoo-test/irv1-vggface2', {'model.safetensors': model.state_dict()})
    loaded = timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id='zoo-test/irv1-vggface2'))
    assert _logits_error(loaded, vggface2) <= 1e-4


def test_official_file_overlay_and_own_file_checkpoint_path(vggface2, tmp_path):
    official = tmp_path / 'official.pt'
    torch.save({'state_dict': {'module.' + k: v for k, v in vggface2['state_dict'].items()}}, official)
    model = timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(file=str(official)))
    assert _logits_error(model, vggface2) <= 1e-4

    ours = tmp_path / 'ours.safetensors'
    save_file(model.state_dict(), ours)
    again = timm.create_model(TAG, checkpoint_path=str(ours))
    assert _logits_error(again, vggface2) <= 1e-4


def test_pretrained_with_other_num_classes_keeps_trunk(vggface2, tmp_path):
    official = tmp_path / 'official.pt'
    torch.save(vggface2['state_dict'], official)
    model = timm.create_model(TAG, pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=str(official)))
    with torch.inference_mode():
        emb = model.eval()(vggface2['inputs']['x'])
    assert relative_error(emb, vggface2['expected']['embeddings']) <= 1e-4


def test_offline_url_source_missing_is_clear_and_never_downloads(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError('a download was attempted in offline mode')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    monkeypatch.setattr(timm.models._hub, 'download_url_to_file', no_network)
    with pytest.raises(WeightsError) as e:
        timm.create_model(TAG, pretrained=True)
    msg = str(e.value)
    assert TAG in msg and URL_FILE in msg and 'HF_HUB_OFFLINE' in msg and 'pretrained_cfg_overlay=dict(file=' in msg


def test_offline_hub_source_missing_is_clear():
    with pytest.raises(WeightsError) as e:
        timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id='zoo-test/absent'))
    msg = str(e.value)
    assert 'zoo-test/absent' in msg and 'offline' in msg and 'pretrained_cfg_overlay=dict(file=' in msg


def test_unreachable_network_is_clear(monkeypatch):
    import huggingface_hub.constants as hf_constants
    monkeypatch.setenv('HF_HUB_OFFLINE', '0')
    monkeypatch.setattr(hf_constants, 'HF_HUB_OFFLINE', False)
    import huggingface_hub.utils._http as hf_http
    monkeypatch.setattr(hf_http.time, 'sleep', lambda seconds: None)  # keep the retries, skip their back-off
    # every proxy points at a closed local port (conftest): the request is refused at once
    with pytest.raises(WeightsError, match='could not be'):
        timm.create_model(TAG, pretrained=True)
    with pytest.raises(WeightsError, match='zoo-test/absent'):
        timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id='zoo-test/absent'))


def test_no_published_weights_is_clear():
    with pytest.raises(WeightsError, match="'inception_resnet_v1' has no published weights"):
        timm.create_model('inception_resnet_v1', pretrained=True)


def test_missing_local_file_is_clear(tmp_path):
    with pytest.raises(WeightsError, match='not found'):
        timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'nope.pt')))


def test_truncated_files_are_clear(tmp_path):
    model = timm.create_model('inception_resnet_v1_facenet', num_classes=10)
    for name, save in (('w.safetensors', save_file), ('w.pt', torch.save)):
        path = tmp_path / name
        save(model.state_dict(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(WeightsError, match='corrupt or truncated'):
            timm.create_model('inception_resnet_v1_facenet', pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(file=str(path)))


class _Payload:
    def __reduce__(self):
        return (print, ('this pickle runs code',))


def test_pickle_needing_code_is_refused(tmp_path):
    path = tmp_path / 'evil.pt'
    with open(path, 'wb') as f:
        pickle.dump({'x': _Payload()}, f)
    with pytest.raises(WeightsError, match='never runs code'):
        timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_checkpoint_for_another_architecture_is_clear(tmp_path):
    path = tmp_path / 'resnet.safetensors'
    save_file(timm.create_model('resnet18').state_dict(), path)
    with pytest.raises(WeightsError, match='does not fit .*another architecture'):
        timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_unwrap_state_dict():
    t = torch.zeros(1)
    assert unwrap_state_dict({'model': {'module.a': t}}) == {'a': t}
    assert unwrap_state_dict({'state_dict_ema': {'_orig_mod.b': t}, 'state_dict': {'c': t}}) == {'b': t}
    assert unwrap_state_dict({'a': t, 'epoch': 3}) == {'a': t, 'epoch': 3}
