"""Strip-MLP against the official Med-Process/Strip_MLP outputs and manifests."""
import json

import pytest
import timm
import torch

from tests.helpers import requires_fixture, requires_manifests
from zoo.bench import count_macs, example_inputs
from zoo.models.strip_mlp import checkpoint_filter_fn, strip_splits
from zoo.testing import assert_matches_fixture, fixtures_root, manifest_param_count, manifest_state_dict


@requires_fixture('strip_mlp_t_light')
def test_fixture_t_light():
    model = timm.create_model('strip_mlp_t_light')

    def forward(m, inputs):
        return dict(logits=m(inputs['x']))

    assert_matches_fixture('strip_mlp_t_light', model, checkpoint_filter_fn, forward)


@requires_fixture('strip_mlp_t_light')
def test_gmacs_match_fixture():
    meta = json.loads((fixtures_root() / 'strip_mlp_t_light' / 'meta.json').read_text())
    model = timm.create_model('strip_mlp_t_light')
    gmacs, _ = count_macs(model, example_inputs(model, 1))
    assert abs(gmacs - meta['flops_g']) <= 0.01 * meta['flops_g'], (gmacs, meta['flops_g'])


# manifest of an official variant -> how the zoo builds it
VARIANTS = {
    'strip_mlp_t_light': 'strip_mlp_t_light',
    'strip_mlp_t': 'strip_mlp_t',
    'strip_mlp_s': 'strip_mlp_s',
    'strip_mlp_b': 'strip_mlp_b',
}


@requires_manifests()
@pytest.mark.parametrize('manifest', sorted(VARIANTS))
def test_manifest_loads_strictly_with_exact_params(manifest):
    model = timm.create_model(VARIANTS[manifest])
    assert sum(p.numel() for p in model.parameters()) == manifest_param_count(manifest)
    official = manifest_state_dict(manifest)
    model.load_state_dict(checkpoint_filter_fn(official, model), strict=True)


def test_channel_group_rule():
    # the official rule: 2 slices when the block width is a multiple of 80 (T*, T), else 4 (S, B)
    assert [strip_splits(80 * 2 ** i) for i in range(4)] == [2, 2, 2, 2]
    assert [strip_splits(96 * 2 ** i) for i in range(4)] == [4, 4, 4, 4]
    assert [strip_splits(112 * 2 ** i) for i in range(4)] == [4, 4, 4, 4]
    with torch.device('meta'):
        small = timm.create_model('strip_mlp_s')
    strip = small.stages[0].blocks[0].token_mixing.strip
    assert (strip.splits, strip.groups) == (4, 12)


@requires_manifests()
def test_filter_accepts_wrappers_prefixes_and_own_files():
    model = timm.create_model('strip_mlp_t_light')
    ours = model.state_dict()
    official = manifest_state_dict('strip_mlp_t_light')
    swin_style = {'model': official, 'epoch': 3, 'max_accuracy': 81.2}  # how the official code saves
    ddp_style = {'state_dict': {'module.' + k: v for k, v in official.items()}}
    for wrapped in (official, swin_style, ddp_style):
        converted = checkpoint_filter_fn(wrapped, model)
        assert converted.keys() == ours.keys()
        assert all(converted[k].shape == ours[k].shape for k in ours)
    assert checkpoint_filter_fn(ours, model).keys() == ours.keys()
    assert checkpoint_filter_fn({'model': ours}, model).keys() == ours.keys()


def test_other_input_size_is_a_clear_error():
    model = timm.create_model('strip_mlp_t_light').eval()
    assert model.pretrained_cfg['fixed_input_size'] is True
    with pytest.raises(ValueError, match=r'224 x 224.*got shape \[1, 3, 256, 256\]'):
        model(torch.randn(1, 3, 256, 256))
    with pytest.raises(ValueError, match='224 x 224'):
        model.forward_intermediates(torch.randn(1, 3, 224, 192))
    with pytest.raises(ValueError, match='square img_size divisible by 32'):
        timm.create_model('strip_mlp_t_light', img_size=200)


def test_other_img_size_builds_for_training():
    model = timm.create_model('strip_mlp_t_light', img_size=256, num_classes=3).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 256, 256)).shape == (1, 3)
        feats = model.forward_intermediates(torch.randn(1, 3, 256, 256), intermediates_only=True)
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8]


def test_features_only_strides():
    model = timm.create_model('strip_mlp_t_light', features_only=True).eval()
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [80, 160, 320, 640]
    with torch.inference_mode():
        feats = model(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape[1:]) for f in feats] == [(80, 56, 56), (160, 28, 28), (320, 14, 14), (640, 7, 7)]


def test_drop_path_is_uniform_and_honoured():
    model = timm.create_model('strip_mlp_t_light', drop_path_rate=0.1)
    rates = {m.drop_prob for m in model.modules() if m.__class__.__name__ == 'DropPath'}
    assert rates == {0.1}
    assert not any(m.__class__.__name__ == 'DropPath' for m in timm.create_model('strip_mlp_t_light').modules())


def test_batch_and_channels_last_agree():
    model = timm.create_model('strip_mlp_t_light').eval()
    for module in model.modules():  # non-trivial GRN and BatchNorm, so every path is exercised
        if module.__class__.__name__ == 'GlobalResponseNorm':
            module.weight.data.normal_(0, 0.5)
            module.bias.data.normal_(0, 0.5)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    x = torch.randn(3, 3, 224, 224)
    with torch.inference_mode():
        batched = model(x)
        single = torch.cat([model(x[i:i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(out, batched, atol=1e-4, rtol=1e-4)


def test_eval_folded_batchnorm_matches_unfolded():
    from zoo.models.strip_mlp import ConvBnAct
    layer = ConvBnAct(8, 6, 1, bias=True, act_layer=torch.nn.GELU)
    layer.bn.running_mean.normal_(0, 0.5)
    layer.bn.running_var.uniform_(0.5, 1.5)
    layer.bn.weight.data.normal_()
    layer.bn.bias.data.normal_()
    layer.eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), layer.bn(layer.conv(x)), atol=1e-5, rtol=1e-5)
