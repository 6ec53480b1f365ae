"""timm's model contract, for every model the zoo registers (after timm's tests/test_models.py)."""
import pytest
import timm
import torch
from timm.layers import DropPath

import zoo
from zoo.bench import to_channels_last

MODELS = zoo.zoo_models()
# Families whose official design cannot be scripted list their models here, with the reason.
NOT_SCRIPTABLE = {}
# Models that are not image classifiers skip the classifier-specific tests (logits shape, head split and reset,
# in_chans with a new head), with the reason; the shared tests feed them their own `example_inputs(batch_size)`.
NOT_CLASSIFIERS = {
    **{m: 'diffusion denoiser: forward(x, sigma, class_labels) returns the denoised x, there is no classifier head '
          '(tests/zoo/test_lego.py covers its forward, backward and in_chans)' for m in zoo.zoo_models('lego_*')},
}
# Models too big to run on this CPU in a test are built on the meta device and checked for structure.
MAX_TEST_PARAMS = 150e6
MAX_TEST_SIDE = 160
MAX_TEST_SIDE_VIDEO = 64  # clips keep their frame count


def _test_input(model) -> torch.Tensor:
    cfg = model.pretrained_cfg
    chans, *spatial = cfg['input_size']
    if not cfg.get('fixed_input_size', False):
        side = MAX_TEST_SIDE if len(spatial) == 2 else MAX_TEST_SIDE_VIDEO
        spatial = spatial[:-2] + [min(s, side) for s in spatial[-2:]]
    return torch.randn(2, chans, *spatial)


def _test_inputs(model) -> tuple:
    """The model's own example inputs where it defines them (e.g. a denoiser's x, sigma, labels), else one batch."""
    if hasattr(model, 'example_inputs'):
        return tuple(model.example_inputs(2))
    return (_test_input(model),)


def _num_params(name) -> int:
    with torch.device('meta'):
        model = timm.create_model(name)
    return sum(p.numel() for p in model.parameters())


def _create(name, **kwargs):
    if _num_params(name) > MAX_TEST_PARAMS:
        pytest.skip(f'{name}: over {MAX_TEST_PARAMS / 1e6:.0f}M params, too big to run here (built on meta elsewhere)')
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs)


def test_catalogue_not_empty():
    assert MODELS, 'import zoo registered no models'
    assert set(MODELS) <= set(zoo.catalogue())


@pytest.mark.parametrize('name', MODELS)
def test_builds_on_meta_device(name):
    with torch.device('meta'):
        model = timm.create_model(name)
    assert all(p.device.type == 'meta' for p in model.parameters())


@pytest.mark.parametrize('name', [m for m in MODELS if m not in NOT_CLASSIFIERS])
def test_forward_backward(name):
    model = _create(name)
    model.train()
    x = _test_input(model)
    out = model(x)
    assert out.shape == (x.shape[0], model.num_classes)
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'no gradient for {missing[:5]}'
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize('name', [m for m in MODELS if m not in NOT_CLASSIFIERS])
def test_features_head_split_and_reset_classifier(name):
    model = _create(name).eval()
    x = _test_input(model)
    with torch.inference_mode():
        out = model(x)
        feats = model.forward_features(x)
        assert torch.allclose(model.forward_head(feats), out, atol=1e-5, rtol=1e-4)
        assert model.forward_head(feats, pre_logits=True).shape[-1] == model.head_hidden_size
        assert feats.shape[1] == model.num_features

    classifier = model.pretrained_cfg['classifier']
    model.reset_classifier(7)
    assert model.num_classes == 7
    assert model.get_classifier() is model.get_submodule(classifier)
    with torch.inference_mode():
        assert model(x).shape == (x.shape[0], 7)
    model.reset_classifier(0)
    with torch.inference_mode():
        assert model(x).shape == (x.shape[0], model.head_hidden_size)
    assert not list(model.get_classifier().parameters())


@pytest.mark.parametrize('name', MODELS)
def test_pretrained_cfg(name):
    with torch.device('meta'):
        model = timm.create_model(name)
    cfg = model.pretrained_cfg
    params = dict(model.named_parameters())
    for key in ('input_size', 'mean', 'std', 'crop_pct', 'interpolation', 'license', 'first_conv', 'classifier',
                'paper_ids', 'origin_url'):
        assert cfg.get(key) is not None or (key == 'classifier' and name in NOT_CLASSIFIERS), \
            f'{name}: pretrained_cfg lacks {key}'
    assert len(cfg['mean']) == len(cfg['std']) == cfg['input_size'][0]
    assert 0 < cfg['crop_pct'] <= 1
    first_convs = cfg['first_conv'] if isinstance(cfg['first_conv'], (list, tuple)) else [cfg['first_conv']]
    for conv in first_convs:
        assert conv + '.weight' in params, f'{name}: first_conv {conv} is not a parameter'
        in_chs = params[conv + '.weight'].shape[1]  # a denoiser's stem may see more (LEGO: 2 coordinate channels)
        assert in_chs == cfg['input_size'][0] or (name in NOT_CLASSIFIERS and in_chs > cfg['input_size'][0])
    classifiers = cfg['classifier'] if isinstance(cfg['classifier'], (list, tuple)) else [cfg['classifier']]
    classifiers = [] if name in NOT_CLASSIFIERS else classifiers
    for head in classifiers:
        assert head + '.weight' in params, f'{name}: classifier {head} is not a parameter'
        assert params[head + '.weight'].shape[0] == cfg['num_classes'] == model.num_classes


@pytest.mark.parametrize('name', [m for m in MODELS if m not in NOT_CLASSIFIERS])
def test_in_chans(name):
    model = _create(name, in_chans=1, num_classes=3).eval()
    x = _test_input(model)[:, :1]
    with torch.inference_mode():
        assert model(x).shape == (x.shape[0], 3)


def _is_hierarchical(name) -> bool:
    with torch.device('meta'):
        model = timm.create_model(name)
    return len({info['reduction'] for info in model.feature_info}) > 1


@pytest.mark.parametrize('name', [m for m in MODELS if _is_hierarchical(m)])
def test_features_only_and_intermediates(name):
    model = _create(name).eval()
    x = _test_input(model)
    n = len(model.feature_info)
    with torch.inference_mode():
        final, intermediates = model.forward_intermediates(x)
        assert torch.allclose(final, model.forward_features(x), atol=1e-5, rtol=1e-4)
        assert len(intermediates) == n
        for feat, info in zip(intermediates, model.feature_info):
            assert feat.shape[1] == info['num_chs']
        last_only = model.forward_intermediates(x, indices=1, intermediates_only=True)
        assert len(last_only) == 1 and torch.equal(last_only[0], intermediates[-1])

    out_indices = tuple(range(1, n))
    features = _create(name, features_only=True, out_indices=out_indices).eval()
    assert features.feature_info.channels() == [model.feature_info[i]['num_chs'] for i in out_indices]
    with torch.inference_mode():
        outs = features(x)
    assert len(outs) == len(out_indices)
    for out, i in zip(outs, out_indices):
        torch.testing.assert_close(out, intermediates[i])
    reductions = features.feature_info.reduction()
    assert reductions == sorted(reductions)

    keep = [1, n - 2]
    assert model.prune_intermediate_layers(indices=keep) == keep
    with torch.inference_mode():
        pruned = model.forward_intermediates(x, indices=keep, intermediates_only=True)
    assert [f.shape for f in pruned] == [intermediates[i].shape for i in keep]


@pytest.mark.parametrize('name', [m for m in MODELS if m not in NOT_SCRIPTABLE])
def test_torchscript(name):
    model = _create(name).eval()
    inputs = _test_inputs(model)
    scripted = torch.jit.script(model)
    with torch.inference_mode():
        torch.testing.assert_close(scripted(*inputs), model(*inputs))


@pytest.mark.parametrize('name', MODELS)
def test_grad_checkpointing_matches(name):
    model = _create(name).train()
    for module in model.modules():  # dropout and stochastic depth off, batch statistics still used
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(module, DropPath):
            module.drop_prob = 0.0
    inputs = _test_inputs(model)
    out = model(*inputs)
    model.set_grad_checkpointing(True)
    torch.testing.assert_close(model(*inputs), out)


@pytest.mark.parametrize('name', MODELS)
def test_channels_last_matches(name):
    model = _create(name).eval()
    x, *rest = _test_inputs(model)
    with torch.inference_mode():
        ref = model(x, *rest)
        model = to_channels_last(model)
        out = model(x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d), *rest)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


# Families whose control flow depends on tensor values cannot be fx-traced; list them with the reason.
NOT_FX_TRACEABLE = {}


@pytest.mark.parametrize('name', [m for m in MODELS if m not in NOT_FX_TRACEABLE])
def test_fx_trace(name):
    model = _create(name).eval()
    inputs = _test_inputs(model)
    traced = torch.fx.symbolic_trace(model)
    with torch.inference_mode():
        torch.testing.assert_close(traced(*inputs), model(*inputs))
