"""P3D ResNet against the official outputs and manifests; clips of other lengths and sizes."""
import json

import pytest
import timm
import torch

from tests.helpers import perturb_norm_stats, requires_fixture, requires_manifests
from zoo import bench
from zoo.models.p3d import checkpoint_filter_fn
from zoo.testing import assert_matches_fixture, fixtures_root, manifest_param_count, manifest_state_dict

VARIANTS = ['p3d63', 'p3d131', 'p3d199', 'p3d199_flow']


@requires_fixture('p3d63')
def test_fixture_p3d63():
    model = timm.create_model('p3d63')

    def forward(m, inputs):
        features = m.forward_features(inputs['x'])  # B x 2048 x T'=1 x 5 x 5
        return dict(logits=m.forward_head(features), features=features[:, :, 0])

    assert_matches_fixture('p3d63', model, checkpoint_filter_fn, forward)


@requires_manifests()
@pytest.mark.parametrize('name', VARIANTS)
def test_manifest_loads_strictly_with_exact_params(name):
    model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == manifest_param_count(name)
    official = manifest_state_dict(name)
    assert any(k.startswith('conv1_custom.') for k in official)
    model.load_state_dict(checkpoint_filter_fn({'state_dict': official}, model), strict=True)


@requires_manifests()
@pytest.mark.parametrize('name', VARIANTS)
def test_gmacs_match_manifest(name):
    meta = json.loads((fixtures_root() / 'manifests' / f'{name}.json').read_text())
    model = timm.create_model(name)
    inputs = bench.example_inputs(model, 1)
    assert list(inputs[0].shape) == list(meta['input']['x'] if isinstance(meta['input'], dict) else meta['input'])
    gmacs, _ = bench.count_macs(model, inputs)
    assert gmacs == pytest.approx(meta['flops_g'], rel=0.01)


def test_long_clips_give_one_prediction_per_clip():
    model = timm.create_model('p3d63', num_classes=7).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 32, 112, 112))
        feats = model.forward_features(torch.randn(1, 3, 32, 112, 112))
    assert out.shape == (2, 7)
    assert feats.shape == (1, 2048, 2, 4, 4)  # two res5 time steps, averaged by the head


def test_short_clip_and_wrong_rank_are_clear_errors():
    model = timm.create_model('p3d63').eval()
    with pytest.raises(ValueError, match='T >= 16'):
        model(torch.randn(1, 3, 8, 112, 112))
    with pytest.raises(ValueError, match='B x C x T x H x W'):
        model(torch.randn(1, 3, 112, 112))


def test_video_features_for_heads():
    model = timm.create_model('p3d63', features_only=True)
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    with torch.inference_mode():
        feats = model(torch.randn(1, 3, 16, 96, 96))
    assert [tuple(f.shape) for f in feats] == [
        (1, 256, 8, 24, 24), (1, 512, 4, 12, 12), (1, 1024, 2, 6, 6), (1, 2048, 3, 3)]


def test_block_types_cycle_over_all_3d_blocks():
    model = timm.create_model('p3d63')
    types = [b.st_type for layer in (model.layer1, model.layer2, model.layer3) for b in layer]
    assert ''.join(types) == 'ABCABCABCABCA'


def test_official_pth_tar_loads_through_file_overlay(tmp_path):
    src = timm.create_model('p3d63').eval()
    official = {}
    for key, value in src.state_dict().items():  # the reference port's names
        if key.startswith('stem.conv.'):
            key = 'conv1_custom.' + key[len('stem.conv.'):]
        elif key.startswith('stem.bn.'):
            key = 'bn1.' + key[len('stem.bn.'):]
        elif key.startswith('layer4.'):
            key = key.replace('.conv2.', '.conv_normal.').replace('.bn2.', '.bn_normal.')
        official[key] = value
    assert 'layer4.2.conv_normal.weight' in official
    path = tmp_path / 'p3d_rgb_63.checkpoint.pth.tar'
    torch.save({'state_dict': official, 'epoch': 3, 'arch': 'p3d'}, path)
    model = timm.create_model('p3d63', pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 16, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), src(x))


def test_reparameterized_clip_model_matches_in_both_layouts():
    """BatchNorms folded and ReLUs / residual sums fused (zoo.layers) in the stem and the 3-D and 2-D blocks."""
    from timm.utils import reparameterize_model

    from zoo.bench import to_channels_last
    from zoo.testing import relative_error
    torch.manual_seed(0)
    model = perturb_norm_stats(timm.create_model('p3d63').eval())
    fused = reparameterize_model(model)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)) for m in fused.modules())  # stem too
    x = torch.randn(1, 3, 16, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        assert relative_error(fused(x), ref) < 1e-5
        assert relative_error(to_channels_last(fused)(x.to(memory_format=torch.channels_last_3d)), ref) < 1e-5
