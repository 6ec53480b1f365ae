"""EMOv2 against the official outputs, manifests and an independent window-attention reference."""
import pytest
import timm
import torch

from tests.helpers import requires_fixture, requires_manifests
from zoo import bench
from zoo.models.emov2 import checkpoint_filter_fn, hybrid_window_attention
from zoo.testing import assert_matches_fixture, fixtures_root, manifest_param_count, manifest_state_dict

VARIANTS = ['emov2_1m', 'emov2_2m', 'emov2_5m', 'emov2_5m_512', 'emov2_20m']


@requires_fixture('emov2_1m')
def test_fixture_emov2_1m():
    model = timm.create_model('emov2_1m')

    def forward(m, inputs):
        final, stages = m.forward_intermediates(inputs['x'], indices=[1, 2, 3, 4])
        return dict(logits=m.forward_head(final), **{f'stage{i}': t for i, t in enumerate(stages, start=1)})

    errors = assert_matches_fixture('emov2_1m', model, checkpoint_filter_fn, forward)
    assert set(errors) == {'logits', 'stage1', 'stage2', 'stage3', 'stage4'}


@requires_manifests()
@pytest.mark.parametrize('name', VARIANTS)
def test_manifest_loads_strictly_params_and_gmacs(name):
    import json
    meta = json.loads((fixtures_root() / 'manifests' / f'{name}.json').read_text())
    model = timm.create_model(name).eval()
    assert sum(p.numel() for p in model.parameters()) == manifest_param_count(name)
    model.load_state_dict(checkpoint_filter_fn(manifest_state_dict(name), model), strict=True)
    assert tuple(model.pretrained_cfg['input_size']) == tuple(meta['input']['x'][1:])
    gmacs, _ = bench.count_macs(model, bench.example_inputs(model, 1))
    assert gmacs == pytest.approx(meta['flops_g'], rel=0.01)


def _reference_attention(qk, v, heads, ws, scale):
    """Both partitions by explicit slicing, one window at a time, with an explicit softmax."""
    b, c2, hp, wp = qk.shape
    n1, n2 = hp // ws, wp // ws
    out = torch.zeros(b, v.shape[1], hp, wp, dtype=qk.dtype)

    def attend(q, k, vv):
        q, k, vv = (t.reshape(b, heads, t.shape[1] // heads, -1).transpose(-1, -2) for t in (q, k, vv))
        o = ((q @ k.transpose(-1, -2)) * scale).softmax(-1) @ vv
        return o.transpose(-1, -2).reshape(b, -1, ws, ws)

    q, k = qk[:, :c2 // 2], qk[:, c2 // 2:]
    for a in range(n1):
        for bb in range(n2):
            grid = (slice(None), slice(None), slice(a, None, n1), slice(bb, None, n2))
            out[grid] += attend(q[grid], k[grid], v[grid])
            local = (slice(None), slice(None), slice(a * ws, (a + 1) * ws), slice(bb * ws, (bb + 1) * ws))
            out[local] += attend(q[local], k[local], v[local])
    return out


@pytest.mark.parametrize('hp, wp', [(14, 21), (7, 7)])
def test_hybrid_window_attention_matches_reference(hp, wp):
    torch.manual_seed(0)
    heads, d, dv, ws = 4, 8, 12, 7
    qk = torch.randn(2, 2 * heads * d, hp, wp, dtype=torch.float64)
    v = torch.randn(2, heads * dv, hp, wp, dtype=torch.float64)
    ours = hybrid_window_attention(qk, v, heads, ws, d ** -0.5)
    torch.testing.assert_close(ours, _reference_attention(qk, v, heads, ws, d ** -0.5))


def test_any_input_size_pads_windows():
    model = timm.create_model('emov2_1m', num_classes=5).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 200, 264))  # stage 3 at 13x17: padded to 14x21
    assert out.shape == (1, 5) and torch.isfinite(out).all()


def test_filter_accepts_training_checkpoints():
    model = timm.create_model('emov2_1m')
    official = manifest_state_dict('emov2_1m') if (fixtures_root() / 'manifests').is_dir() else None
    if official is None:
        pytest.skip('no manifests')
    ours = checkpoint_filter_fn(official, model)
    wrapped = {'net': {'module.' + k: v for k, v in official.items()}, 'net_E': {}, 'epoch': 3}
    assert checkpoint_filter_fn(wrapped, model).keys() == ours.keys()
    assert checkpoint_filter_fn(ours, model).keys() == ours.keys()


def test_features_for_detection():
    model = timm.create_model('emov2_1m', features_only=True)
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [32, 48, 80, 180]
    with torch.inference_mode():
        feats = model(torch.randn(1, 3, 128, 160))
    assert [f.shape[-2:] for f in feats] == [(32, 40), (16, 20), (8, 10), (4, 5)]


def test_reset_classifier_uses_final_width():
    model = timm.create_model('emov2_2m')
    model.reset_classifier(10)
    assert model.head.in_features == 200


@requires_fixture('emov2_1m')
def test_official_release_file_loads_offline_from_torch_hub_cache():
    from zoo.hub import url_cache_path
    from zoo.testing import load_fixture, relative_error
    fx = load_fixture('emov2_1m')
    path = url_cache_path(timm.models.get_pretrained_cfg('emov2_1m.in1k_kd').url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fx['state_dict'], path)  # the official file layout (bare state_dict, official names)
    model = timm.create_model('emov2_1m.in1k_kd', pretrained=True).eval()
    with torch.inference_mode():
        assert relative_error(model(fx['inputs']['x']), fx['expected']['logits']) <= 1e-4
