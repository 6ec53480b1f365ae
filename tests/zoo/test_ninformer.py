"""NiNformer against the official Abdullah-88/NiNformer outputs and manifests."""
import json

import pytest
import timm
import torch

from tests.helpers import requires_fixture, requires_manifests
from zoo.bench import count_macs, example_inputs
from zoo.models.ninformer import checkpoint_filter_fn
from zoo.testing import (
    assert_matches_fixture, fixtures_root, load_fixture, manifest_param_count, manifest_state_dict)

VARIANTS = ('ninformer_cifar10', 'ninformer_cifar100', 'ninformer_mnist')


def _forward(m, inputs):
    features = m.forward_features(inputs['x'])
    return dict(logits=m.forward_head(features), pooled=m.forward_head(features, pre_logits=True))


@requires_fixture('ninformer_cifar10')
def test_fixture_cifar10():
    assert_matches_fixture('ninformer_cifar10', timm.create_model('ninformer_cifar10'), checkpoint_filter_fn, _forward)


@requires_fixture('ninformer_cifar10')
def test_fixture_cifar10_training_code_path():
    """The training-time token MLP (whole batch, dropout modules in place) gives the same numbers."""
    model = timm.create_model('ninformer_cifar10', proj_drop_rate=0.)
    fx = load_fixture('ninformer_cifar10')
    model.load_state_dict(checkpoint_filter_fn(fx['state_dict'], model))
    model.train()
    with torch.no_grad():
        out = _forward(model, fx['inputs'])
    for key, expected in fx['expected'].items():
        assert ((out[key] - expected).abs().max() / expected.abs().max()).item() <= fx['meta']['rtol_max']


@requires_manifests()
@pytest.mark.parametrize('name', VARIANTS)
def test_manifest_loads_strictly_with_exact_params(name):
    model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == manifest_param_count(name)
    model.load_state_dict(checkpoint_filter_fn(manifest_state_dict(name), model), strict=True)
    spec = json.loads((fixtures_root() / 'manifests' / f'{name}.json').read_text())
    assert tuple(model.pretrained_cfg['input_size']) == tuple(spec['input'][1:])


@requires_fixture('ninformer_cifar10')
def test_gmacs_match_official():
    model = timm.create_model('ninformer_cifar10')
    gmacs, _ = count_macs(model, example_inputs(model, 1))
    assert gmacs == pytest.approx(load_fixture('ninformer_cifar10')['meta']['flops_g'], rel=0.01)


@requires_manifests()
@pytest.mark.parametrize('name', ['ninformer_cifar100', 'ninformer_mnist'])
def test_gmacs_match_official_manifests(name):
    flops = json.loads((fixtures_root() / 'manifests' / f'{name}.json').read_text())['flops_g']
    model = timm.create_model(name)
    assert count_macs(model, example_inputs(model, 1))[0] == pytest.approx(flops, rel=0.01)


def test_filter_accepts_wrappers_prefixes_and_own_files():
    model = timm.create_model('ninformer_cifar10')
    ours = model.state_dict()
    assert checkpoint_filter_fn(ours, model).keys() == ours.keys()
    if (fixtures_root() / 'manifests').is_dir():
        official = manifest_state_dict('ninformer_cifar10')
        for wrapped in (official, {'model': official}, {'state_dict': {'module.' + k: v for k, v in official.items()}}):
            assert checkpoint_filter_fn(wrapped, model).keys() == ours.keys()


def test_fixed_input_size_is_a_clear_error():
    model = timm.create_model('ninformer_cifar10').eval()
    assert model.pretrained_cfg['fixed_input_size']
    with pytest.raises(ValueError, match=r'expects B x C x 32 x 32 .* got shape \[1, 3, 64, 64\]'):
        model(torch.randn(1, 3, 64, 64))
    mnist = timm.create_model('ninformer_mnist').eval()
    with pytest.raises(ValueError, match=r'28 x 28 .* got shape \[1, 1, 32, 32\]'):
        mnist(torch.randn(1, 1, 32, 32))
    bigger = timm.create_model('ninformer_cifar10', img_size=64).eval()  # new weights for 256 tokens
    assert bigger.blocks[0].gate.mixer.mlp_tokens.fc1.weight.shape == (512, 256)
    with torch.inference_mode():
        assert bigger(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_inference_chunks_match_whole_batch():
    torch.manual_seed(0)
    model = timm.create_model('ninformer_cifar100').eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        ref = model(x)
        for chunk in (1, 3, 8):
            for blk in model.blocks:
                blk.gate.mixer.mlp_tokens.chunk = chunk
            torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)


def test_intermediates_and_features_only():
    model = timm.create_model('ninformer_cifar10').eval()
    assert {info['reduction'] for info in model.feature_info} == {4} and len(model.feature_info) == 4
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        final, maps = model.forward_intermediates(x)
        tokens = model.forward_intermediates(x, indices=[1, 3], output_fmt='NLC', intermediates_only=True)
        torch.testing.assert_close(final, model.forward_features(x))
    assert [tuple(f.shape) for f in maps] == [(2, 256, 8, 8)] * 4
    assert [tuple(t.shape) for t in tokens] == [(2, 64, 256)] * 2
    # tokens are row-major: token h * 8 + w is map position (h, w)
    torch.testing.assert_close(tokens[0][:, 8 * 3 + 5], maps[1][:, :, 3, 5])
    torch.testing.assert_close(tokens[1].transpose(1, 2).reshape(2, 256, 8, 8), maps[3])

    features = timm.create_model('ninformer_cifar10', features_only=True, out_indices=(1, 3)).eval()
    with torch.inference_mode():
        outs = features(x)
    assert features.feature_info.reduction() == [4, 4] and features.feature_info.channels() == [256, 256]
    assert [tuple(o.shape) for o in outs] == [(2, 256, 8, 8)] * 2


def test_grad_checkpointing_recomputes_blocks():
    model = timm.create_model('ninformer_cifar10').train()
    calls = []
    model.blocks[1].register_forward_pre_hook(lambda *_: calls.append(1))
    model.set_grad_checkpointing(True)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert len(calls) == 2


def test_official_dropout_is_the_default():
    model = timm.create_model('ninformer_cifar10')
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.5, 0.0}  # 0.5 in every MLP (as train.py), none before the classifier


def test_no_published_weights():
    from zoo.hub import WeightsError
    for name in VARIANTS:
        cfg = timm.models.get_pretrained_cfg(name)
        assert not cfg.url and not cfg.hf_hub_id
    with pytest.raises(WeightsError, match='no published weights'):
        timm.create_model('ninformer_cifar10', pretrained=True)


def test_fx_features_are_the_same_maps_as_features_only():
    torch.manual_seed(0)
    getter = timm.create_model('ninformer_cifar10', features_only=True).eval()
    torch.manual_seed(0)  # the same initial weights
    graph = timm.create_model('ninformer_cifar10', features_only=True, feature_cls='fx').eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        for a, b in zip(getter(x), graph(x)):
            assert a.shape == b.shape == (2, 256, 8, 8)
            torch.testing.assert_close(a, b)
