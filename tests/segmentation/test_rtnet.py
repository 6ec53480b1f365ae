"""RTNet: official numbers (fixture), exact layouts and param counts (manifests), checkpoint conversion."""
import json

import pytest
import timm
import torch

import segmentation  # noqa: F401  (registers the models)
from segmentation.rtnet import RTNet, checkpoint_filter_fn, init_from_resnet
from tests.helpers import perturb_norm_stats, requires_fixture, requires_manifests
from zoo.hub import WeightsError
from zoo.models import create_model, get_pretrained_cfg
from zoo.testing import assert_matches_fixture, fixtures_root, manifest_param_count

OFFICIAL = ('rtnet50_fcn11', 'rtnet50_fcn14', 'rtnet101_fcn14')


def _meta_model(name, **kwargs):
    with torch.device('meta'):
        return create_model(name, **kwargs)


@requires_fixture('rtnet50_fcn11')
def test_rtnet50_fcn11_matches_official():
    def forward(model, inputs):
        feats = model.forward_encoder(inputs['x'], inputs['rois'])
        out = {f'{k}_first64ch': v[:, :64] for k, v in feats.items()}
        out['logits'] = model.forward_head(feats, inputs['x'].shape[-2:])
        assert torch.equal(out['logits'], model(inputs['x'], inputs['rois']))
        return out

    torch.manual_seed(0)
    errors = assert_matches_fixture('rtnet50_fcn11', create_model('rtnet50_fcn11'), checkpoint_filter_fn, forward)
    assert max(errors.values()) < 1e-5, errors


@requires_manifests()
@pytest.mark.parametrize('name', OFFICIAL)
def test_param_count_keys_and_shapes_match_official(name):
    model = _meta_model(name)
    assert sum(p.numel() for p in model.parameters()) == manifest_param_count(name)
    spec = json.loads((fixtures_root() / 'manifests' / f'{name}.json').read_text())['keys']
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: (v['shape'] if isinstance(v, dict) else v) for k, v in spec.items()}
    assert ours == theirs


def test_timm_device_and_dtype_arguments():
    model = create_model('rtnet101_fcn14', device='meta', dtype=torch.bfloat16)
    assert all(p.device.type == 'meta' and p.dtype == torch.bfloat16 for p in model.parameters())
    model.reset_classifier(3)
    assert model.get_classifier().weight.device.type == 'meta'


def test_baseline_sizes():
    # no manifests for the baselines: torchvision ResNet-50 without fc (23,508,032) + the heads
    fcn = _meta_model('resnet50_fcn14')
    head = 2048 * 512 * 9 + 2 * 512 + 512 * 14 + 14
    assert sum(p.numel() for p in fcn.parameters()) == 23_508_032 + head
    dl = _meta_model('resnet50_deeplabv3plus14')
    assert 'decoder.aspp.conv2.conv.weight' in dl.state_dict()
    assert dl.state_dict()['decoder.decoder.conv_out.weight'].shape == (14, 256, 1, 1)
    assert 'encoder.body.layer4.2.conv3.weight' in dl.state_dict()


def test_forward_backward_small():
    """A narrow RTNet (every block kind, widths / 4) to keep the test fast; rtnet50 runs in the fixture test."""
    torch.manual_seed(0)
    model = RTNet('rtnet', layers=(2, 2, 2, 2), widths=(16, 32, 64, 128), num_classes=5).train()
    x = torch.randn(2, 3, 32, 40)
    rois = torch.tensor([[10., 10., 50., 70.], [0., 0., 30., 30.]])
    out = model(x, rois)
    assert out.shape == (2, 5, 32, 40)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    feats = model.forward_encoder(x, rois)
    assert [tuple(f.shape[1:]) for f in feats.values()] == [(64, 8, 10), (128, 4, 5), (256, 4, 5), (512, 4, 5)]
    model.reset_classifier(3)
    assert model(x).shape == (2, 3, 32, 40) and model.num_classes == 3


def test_deeplabv3plus_baseline_forward():
    torch.manual_seed(0)
    model = create_model('resnet50_deeplabv3plus14').eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 40, 40)).shape == (1, 14, 40, 40)
        # the official ASPP's output 1x1 conv pads by 1: its map is 2 px larger each way
        assert model.decoder.aspp(torch.randn(1, 2048, 5, 6)).shape == (1, 256, 7, 8)
    model.reset_classifier(4)
    assert model.get_classifier() is model.get_submodule(model.pretrained_cfg['classifier'])


def test_checkpoint_filter_takes_training_checkpoints(tmp_path):
    torch.manual_seed(0)
    src = create_model('rtnet50_fcn11').eval()
    sd = src.state_dict()
    training = {'state_dict': {**{k.replace('encoder.', 'backbone.', 1): v for k, v in sd.items()},
                               'aux_head.0.weight': torch.zeros(3), 'auxlayer.bias': torch.zeros(1)}}
    path = tmp_path / 'rtnet50-fcn-11.torch'
    torch.save(training, path)
    loaded = create_model('rtnet50_fcn11', pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_pretrained_tag_loads_the_official_file_from_the_hub_cache():
    """The tag's Hub copy (an official .torch file in a subfolder), offline from a laid-out HF cache."""
    from pathlib import Path

    from huggingface_hub import constants
    torch.manual_seed(1)
    src = create_model('rtnet50_fcn14').eval()
    root = Path(constants.HF_HUB_CACHE) / 'models--public-data--ibug-face-parsing'
    commit = 'e5b7de7b2da75f1d9682616f5b9349f614748947'
    (root / 'snapshots' / commit / 'rtnet').mkdir(parents=True)
    (root / 'refs').mkdir()
    (root / 'refs' / 'main').write_text(commit)
    torch.save({'state_dict': src.state_dict()}, root / 'snapshots' / commit / 'rtnet' / 'rtnet50-fcn-14.torch')
    loaded = create_model('rtnet50_fcn14.ibugmask', pretrained=True)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k


def test_pretrained_offline_names_the_hub_copy():
    cfg = get_pretrained_cfg('rtnet50_fcn11.ibugmask')
    assert cfg.hf_hub_id == 'public-data/ibug-face-parsing' and cfg.hf_hub_filename == 'rtnet/rtnet50-fcn-11.torch'
    with pytest.raises(WeightsError, match='public-data/ibug-face-parsing'):
        create_model('rtnet50_fcn11.ibugmask', pretrained=True)


def test_init_from_timm_resnet50():
    torch.manual_seed(0)
    resnet = timm.create_model('resnet50')
    model = create_model('rtnet50_fcn11')
    missing = init_from_resnet(model, resnet.state_dict())
    assert missing == []
    rsd, msd = resnet.state_dict(), model.state_dict()
    assert torch.equal(msd['encoder.conv1.weight'], rsd['conv1.weight'])
    assert torch.equal(msd['encoder.layer1.1.conv2.weight'], rsd['layer1.1.conv2.weight'])
    assert torch.equal(msd['encoder.layer3.2.conv1_b.weight'], rsd['layer3.2.conv1.weight'][128:])
    assert torch.equal(msd['encoder.layer2.1.conv_cart.0.weight'], rsd['layer2.1.conv2.weight'][64:, 64:])
    base = create_model('resnet50_fcn14')
    assert init_from_resnet(base, resnet.state_dict()) == []
    assert torch.equal(base.state_dict()['encoder.body.layer4.0.conv2.weight'], rsd['layer4.0.conv2.weight'])


def test_weight_manifest_lists_every_tag():
    from zoo.models import list_pretrained
    from zoo.weights import load_manifest
    manifest = load_manifest()
    tags = [tag for name in segmentation.segmentation_models() for tag in list_pretrained(name + '.*')]
    assert len(tags) == 5
    for tag in tags:
        cfg = get_pretrained_cfg(tag)
        entry = manifest[tag]
        assert entry['source_url'] == f'https://huggingface.co/{cfg.hf_hub_id}' and entry['license'] == cfg.license
        assert entry['file'] == cfg.hf_hub_filename and len(entry['sha256']) == 64


def test_face_parsers_live_in_the_zoo_registry_not_timms():
    """Face parsers are not classifiers of their input: they stay out of timm's registry (whose contract and
    test suite are a classifier's) and register with the zoo's; the catalogue and create_model cover both."""
    import zoo
    from zoo.models import is_model, list_pretrained, model_entrypoint
    names = set(segmentation.segmentation_models())
    assert names == {'rtnet50_fcn11', 'rtnet50_fcn14', 'rtnet101_fcn14', 'resnet50_fcn14', 'resnet50_deeplabv3plus14'}
    assert not names & set(timm.list_models())
    assert names <= set(zoo.catalogue()) and {zoo.family_of(n) for n in names} == {'face_parsing'}
    assert 'rtnet50_fcn14.ibugmask' in list_pretrained('rtnet*') and is_model('rtnet50_fcn14.ibugmask')
    assert model_entrypoint('rtnet50_fcn14.ibugmask').__module__ == 'segmentation.rtnet'
    model = create_model('rtnet50_fcn14.ibugmask', num_classes=3, device='meta')
    assert model.pretrained_cfg['tag'] == 'ibugmask' and model.num_classes == 3
    assert model.pretrained_cfg['hf_hub_filename'] == 'rtnet/rtnet50-fcn-14.torch'
    with pytest.raises(RuntimeError, match='nosuchtag'):
        create_model('rtnet50_fcn11.nosuchtag')
    assert type(create_model('inception_resnet_v1', num_classes=5)).__name__ == 'InceptionResNetV1'  # timm's


@pytest.mark.parametrize('name', ['rtnet50_fcn11', 'resnet50_fcn14'])
def test_reparameterized_parser_matches(name):
    """timm's reparameterize_model: BatchNorms folded, entry convs merged, ReLUs and residual sums fused
    (zoo.layers); same logits in either layout, on statistics far from BatchNorm's init."""
    from timm.utils import reparameterize_model

    from zoo.bench import to_channels_last
    from zoo.testing import relative_error
    torch.manual_seed(0)
    model = perturb_norm_stats(create_model(name).eval(), affine=0.2)
    fused = reparameterize_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x, rois = torch.randn(1, 3, 97, 97), torch.tensor([[10., 20., 80., 70.]])
    with torch.inference_mode():
        ref = model(x, rois)
        assert relative_error(fused(x, rois), ref) < 1e-5
        fused_cl = to_channels_last(fused)
        assert relative_error(fused_cl(x.to(memory_format=torch.channels_last), rois), ref) < 1e-5
