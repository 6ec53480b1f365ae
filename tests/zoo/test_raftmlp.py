"""RaftMLP against the official okojoalg/raft-mlp outputs and manifests."""
import pytest
import timm
import torch

from tests.helpers import requires_fixture, requires_manifests
from zoo.bench import count_macs, example_inputs
from zoo.models.raftmlp import checkpoint_filter_fn
from zoo.testing import (
    assert_matches_fixture, fixtures_root, load_fixture, manifest_param_count, manifest_state_dict)

VARIANTS = ('raftmlp_s', 'raftmlp_m', 'raftmlp_l')


@requires_fixture('raftmlp_s')
def test_fixture_s():
    model = timm.create_model('raftmlp_s')
    errors = assert_matches_fixture(
        'raftmlp_s', model, checkpoint_filter_fn, lambda m, inputs: dict(logits=m(inputs['x'])))
    assert errors['logits'] < 1e-5


@requires_fixture('raftmlp_s')
def test_fixture_s_reparameterized_and_chunked():
    """Merged embedding kernels and inference chunks change the sums' order only."""
    from timm.utils import reparameterize_model
    fx = load_fixture('raftmlp_s')
    model = timm.create_model('raftmlp_s').eval()
    model.load_state_dict(checkpoint_filter_fn(fx['state_dict'], model))
    fused = reparameterize_model(model)
    assert len(fused.stages[0].downsample.proj) == 1 and fused.stages[0].downsample.proj[0].conv.kernel_size == (8, 8)
    for stage in fused.stages:
        stage.chunk_elems = 1  # one image at a time
    with torch.inference_mode():
        out = fused(fx['inputs']['x'])
    expected = fx['expected']['logits']
    assert ((out - expected).abs().max() / expected.abs().max()).item() < 1e-5


@requires_manifests()
@pytest.mark.parametrize('name', VARIANTS)
def test_manifest_loads_strictly_with_exact_params(name):
    model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == manifest_param_count(name)
    model.load_state_dict(checkpoint_filter_fn(manifest_state_dict(name), model), strict=True)


@requires_fixture('raftmlp_s')
def test_gmacs_match_official():
    model = timm.create_model('raftmlp_s')
    gmacs, _ = count_macs(model, example_inputs(model, 1))
    assert gmacs == pytest.approx(load_fixture('raftmlp_s')['meta']['flops_g'], rel=0.01)


@requires_manifests()
@pytest.mark.parametrize('name', ['raftmlp_m', 'raftmlp_l'])
def test_gmacs_match_official_manifests(name):
    import json
    flops = json.loads((fixtures_root() / 'manifests' / f'{name}.json').read_text())['flops_g']
    model = timm.create_model(name)
    assert count_macs(model, example_inputs(model, 1))[0] == pytest.approx(flops, rel=0.01)


def test_token_norm_parameters_are_permuted():
    """The official token-mixing LayerNorms store channel i * C/r + j at index j * r + i."""
    model = timm.create_model('raftmlp_s')
    official = {
        'levels.0.fn.2.1.norm.1.weight': torch.arange(64.),
        'levels.0.fn.2.3.norm.1.bias': torch.arange(64.),
        'levels.0.fn.2.5.norm.weight': torch.arange(64.),
    }
    out = checkpoint_filter_fn(official, model)
    natural = torch.tensor([j * 2 + i for i in range(2) for j in range(32)], dtype=torch.float)
    assert torch.equal(out['stages.0.blocks.0.vertical.norm.weight'], natural)
    assert torch.equal(out['stages.0.blocks.0.horizontal.norm.bias'], natural)
    assert torch.equal(out['stages.0.blocks.0.channel.norm.weight'], torch.arange(64.))  # channel LN: as is


def test_filter_accepts_wrappers_prefixes_and_own_files():
    model = timm.create_model('raftmlp_s', num_classes=5)
    ours = model.state_dict()
    official = manifest_state_dict('raftmlp_s') if (fixtures_root() / 'manifests').is_dir() else None
    assert checkpoint_filter_fn(ours, model).keys() == ours.keys()
    assert checkpoint_filter_fn({'model': {'module.' + k: v for k, v in ours.items()}}, model).keys() == ours.keys()
    if official is not None:
        model = timm.create_model('raftmlp_s')
        for wrapped in (official, {'model': official}, {'state_dict': {'module.' + k: v for k, v in official.items()}}):
            assert checkpoint_filter_fn(wrapped, model).keys() == model.state_dict().keys()


def test_fixed_input_size_is_a_clear_error():
    model = timm.create_model('raftmlp_s').eval()
    assert model.pretrained_cfg['fixed_input_size']
    with pytest.raises(ValueError, match=r'expects B x C x 224 x 224 .* got shape \[1, 3, 192, 224\]'):
        model(torch.randn(1, 3, 192, 224))
    with pytest.raises(ValueError, match='dynamic_img_size=True'):
        model.forward_intermediates(torch.randn(1, 3, 256, 256))


def test_dynamic_img_size():
    torch.manual_seed(0)
    fixed = timm.create_model('raftmlp_s', num_classes=4).eval()
    dynamic = timm.create_model('raftmlp_s', num_classes=4, dynamic_img_size=True).eval()
    dynamic.load_state_dict(fixed.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(dynamic(x), fixed(x))  # at 224 nothing is resized
        assert dynamic(torch.randn(1, 3, 250, 190)).shape == (1, 4)  # 250 is resized up to 252 for patch 4
        feats = dynamic.forward_intermediates(torch.randn(1, 3, 320, 256), intermediates_only=True)
    assert [tuple(f.shape[-2:]) for f in feats] == [(80, 64), (40, 32), (20, 16), (10, 8)]


def test_official_det_features_tap_the_level0_embedding():
    model = timm.create_model('raftmlp_s', official_det_features=True).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        feats = model.forward_intermediates(x, intermediates_only=True)
        embed = model.stages[0].embed(x).permute(0, 3, 1, 2)
        default = timm.create_model('raftmlp_s').eval()
        default.load_state_dict(model.state_dict())
        feats_default = default.forward_intermediates(x, intermediates_only=True)
    torch.testing.assert_close(feats[0], embed)
    assert not torch.allclose(feats[0], feats_default[0])
    for a, b in zip(feats[1:], feats_default[1:]):
        torch.testing.assert_close(a, b)


def test_features_only_strides():
    model = timm.create_model('raftmlp_s', features_only=True).eval()
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [64, 128, 256, 512]
    with torch.inference_mode():
        feats = model(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 56, 56), (1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7)]


def test_grad_checkpointing_recomputes_blocks():
    model = timm.create_model('raftmlp_s', num_classes=3).train()
    calls = []
    model.stages[1].blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))
    model.set_grad_checkpointing(True)
    model(torch.randn(1, 3, 224, 224)).sum().backward()
    assert len(calls) == 2  # once forward, once again during backward


def test_drop_path_rate_is_constant_as_the_reference():
    model = timm.create_model('raftmlp_s', drop_path_rate=0.1)
    rates = {m.drop_prob for m in model.modules() if type(m).__name__ == 'DropPath'}
    assert rates == {0.1}


def test_no_published_weights():
    from zoo.hub import WeightsError
    for name in VARIANTS:
        cfg = timm.models.get_pretrained_cfg(name)
        assert not cfg.url and not cfg.hf_hub_id
    with pytest.raises(WeightsError, match='no published weights'):
        timm.create_model('raftmlp_s', pretrained=True)


@requires_manifests()
def test_official_file_loads_through_the_hub_with_other_in_chans(tmp_path):
    official = manifest_state_dict('raftmlp_s')
    path = tmp_path / 'last_model_0.pt'
    torch.save({'module.' + k: v for k, v in official.items()}, path)  # DDP-wrapped, as the reference saves
    model = timm.create_model('raftmlp_s', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(model.stages[0].downsample.proj[0].weight.flatten(1),
                               official['levels.0.fn.0.fc.weight'][:, :48])
    grey = timm.create_model('raftmlp_s', pretrained=True, in_chans=1, pretrained_cfg_overlay=dict(file=str(path)))
    assert grey.stages[0].downsample.proj[1].weight.shape == (64, 1, 8, 8)
