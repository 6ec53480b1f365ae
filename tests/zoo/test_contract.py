"""timm's model contract, for every model the zoo registers (after timm's tests/test_models.py).

`TIMM_SUITE` says, per family, which of the eight checks timm's suite runs on a model (`test_model_forward`,
`_backward`, `_default_cfgs`, `_forward_torchscript`, `_forward_features`, `_forward_fx`, `_backward_fx`,
`_forward_fx_torchscript`) hold for it, and for each one that cannot apply, the check here that replaces
it and why. Each entry names the test(s) in this repository that make the same check.
"""
import fnmatch
import importlib

import pytest
import timm
import torch
from timm.layers import DropPath
from timm.layers._fx import create_feature_extractor, get_graph_node_names

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


# timm's check -> the tests here that make it (test_contract.py unless a module is named)
TIMM_CHECKS = {
    'forward': 'test_forward_backward test_grad_checkpointing_matches',
    'backward': 'test_forward_backward',
    'default_cfgs': 'test_pretrained_cfg test_features_head_split_and_reset_classifier test_unpooled_features',
    'forward_torchscript': 'test_torchscript',
    'forward_features': 'test_features_only_default',
    'forward_fx': 'test_fx_trace',
    'backward_fx': 'test_fx_trace test_forward_backward',
    'forward_fx_torchscript': 'test_fx_torchscript',
}
_IMAGE_CLASSIFIER = {check: 'passes' for check in TIMM_CHECKS}
_CLIP = ('replaced: clips are B x C x T x H x W, the suite feeds 4-D images and asserts 4-D unpooled features; '
         'test_unpooled_features checks the 5-D unpooled map (B x C x T x H x W, strided) instead')
_DENOISER = ('replaced: a denoiser D(x, sigma, labels) has no classifier and needs sigma, which the suite does not '
             'pass; tests/zoo/test_lego.py and the shared tests here (torchscript, fx, checkpointing, channels-last) '
             'run it on its own example_inputs')
TIMM_SUITE = {
    'inception': _IMAGE_CLASSIFIER,
    'emov2': _IMAGE_CLASSIFIER,
    'spartan': _IMAGE_CLASSIFIER,
    'raftmlp': _IMAGE_CLASSIFIER,
    'strip_mlp': _IMAGE_CLASSIFIER,
    'ninformer': _IMAGE_CLASSIFIER,
    'p3d': dict(_IMAGE_CLASSIFIER, default_cfgs=_CLIP),
    'lego': {check: _DENOISER for check in TIMM_CHECKS},
    'face_parsing': {check: (
        "replaced: face parsers are not classifiers (per-pixel logits from a warped face and its box), so they "
        "live in the zoo's own registry, not timm's, and timm's suite does not list them; "
        "tests/segmentation/test_rtnet.py checks forward, backward, cfgs, meta builds and weights")
        for check in TIMM_CHECKS},
}


def test_timm_suite_table_names_every_family_and_check():
    """Nothing silently skipped: every family says for each of timm's checks that it passes or what replaces it,
    and every test named for a check exists."""
    assert set(TIMM_SUITE) == set(zoo.families())
    for family, checks in TIMM_SUITE.items():
        assert set(checks) == set(TIMM_CHECKS), family
        for check, verdict in checks.items():
            assert verdict == 'passes' or verdict.startswith('replaced: '), (family, check)
    for tests in TIMM_CHECKS.values():
        for test in tests.split():
            assert callable(globals().get(test)), test
    for module in ('tests.zoo.test_lego', 'tests.segmentation.test_rtnet'):
        importlib.import_module(module)


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


CLASSIFIERS = [m for m in MODELS if m not in NOT_CLASSIFIERS]


@pytest.mark.parametrize('name', CLASSIFIERS)
def test_unpooled_features(name):
    """timm's default_cfgs check: `reset_classifier(0, '')` and `num_classes=0, global_pool=''` give the unpooled map
    (4-D for images, 5-D for clips), the size forward_features gives."""
    model = _create(name).eval()
    x = _test_input(model)
    with torch.inference_mode():
        feats = model.forward_features(x)
        model.reset_classifier(0, '')
        assert model.num_classes == 0
        out = model(x)
    assert out.dim() == x.dim() and out.shape[2:] == feats.shape[2:] and out.shape[0] == x.shape[0]
    model = _create(name, num_classes=0, global_pool='').eval()
    with torch.inference_mode():
        assert model(x).shape == out.shape


@pytest.mark.parametrize('name', CLASSIFIERS)
def test_features_only_default(name):
    """timm's forward_features check: `features_only=True` with the default out_indices builds, gives >= 3 maps
    whose channels and strides are feature_info's."""
    model = _create(name, features_only=True).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert len(channels) >= 3
    x = _test_input(model)
    with torch.inference_mode():
        outs = model(x)
    assert len(outs) == len(channels)
    for out, chs, red in zip(outs, channels, reductions):
        assert out.shape[0] == x.shape[0] and out.shape[1] == chs
        assert all(o <= -(-s // red) + 1 for o, s in zip(out.shape[-2:], x.shape[-2:]))


def _smallest_per_family(names):
    best = {}
    for name in names:
        family = zoo.family_of(name)
        if family not in best or _num_params(name) < _num_params(best[family]):
            best[family] = name
    return sorted(best.values())


@pytest.mark.parametrize('name', _smallest_per_family([m for m in MODELS if m not in NOT_SCRIPTABLE]))
def test_fx_torchscript(name):
    """timm's fx_torchscript check (the family's smallest model): trace with timm's fx leaves and autowraps, script
    the graph, and match the eager output."""
    model = _create(name).eval()
    inputs = _test_inputs(model)
    last = get_graph_node_names(model)[1][-1]
    scripted = torch.jit.script(create_feature_extractor(model, [last]))
    with torch.inference_mode():
        torch.testing.assert_close(scripted(*inputs)[last], model(*inputs))


@pytest.mark.parametrize('name', MODELS)
def test_structure_on_meta(name):
    """Everything that needs no numbers, for every variant (those too big to run here included): feature_info names
    real modules with growing strides; a classifier's reset builds the head timm's way; param count as built."""
    with torch.device('meta'):
        model = timm.create_model(name)
    assert model.feature_info, name
    reductions = [info['reduction'] for info in model.feature_info]
    assert reductions == sorted(reductions)
    for info in model.feature_info:
        assert info['num_chs'] > 0
        model.get_submodule(info['module'])  # raises if feature_info names no module
    n_params = sum(p.numel() for p in model.parameters())
    if name in NOT_CLASSIFIERS:
        assert n_params == _num_params(name) > 0
        return
    head = model.get_classifier()
    model.reset_classifier(7)
    assert model.num_classes == 7 and model.get_classifier().weight.shape[0] == 7
    assert model.get_classifier().weight.device.type == 'meta'
    model.reset_classifier(0, '')
    assert model.num_classes == 0 and not list(model.get_classifier().parameters())
    assert n_params - sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in head.parameters())
