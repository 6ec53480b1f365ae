"""LEGO against the official outputs and manifests; real brick skipping; the EDM sampler; `zoo sample`; pickles."""
import json
import textwrap

import pytest
import timm
import torch

from tests.helpers import requires_fixture, requires_manifests
from zoo import bench, diffusion
from zoo.errors import InputError
from zoo.hub import WeightsError
from zoo.models.lego import LEGO, checkpoint_filter_fn, sincos_pos_embed_2d
from zoo.testing import assert_matches_fixture, fixtures_root, load_fixture, manifest_state_dict, relative_error

VARIANTS = [
    'lego_s_pg_64', 'lego_s_pr_64', 'lego_s_u_32', 'lego_s_u_64',
    'lego_l_pg_32', 'lego_l_pr_32', 'lego_l_pg_64', 'lego_l_pr_64', 'lego_l_pg_64_old', 'lego_l_pr_64_old',
    'lego_l_u_32', 'lego_l_u_64',
    'lego_xl_pg_32', 'lego_xl_pr_32', 'lego_xl_pg_64', 'lego_xl_pr_64', 'lego_xl_u_32', 'lego_xl_u_64',
]
SMALL = ['lego_s_pg_64', 'lego_s_pr_64', 'lego_s_u_32', 'lego_s_u_64']


def _manifest(name):
    return json.loads((fixtures_root() / 'manifests' / f'{name}.json').read_text())


def _official_model(name):
    model = timm.create_model(name).eval()
    model.load_state_dict(checkpoint_filter_fn(manifest_state_dict(name), model), strict=True)
    return model


def _tiny(num_classes=10, in_chans=3, seed=0):
    """A 3-brick PG stack at 16x16 with random (non-zero) weights: the official init zeroes every output layer."""
    torch.manual_seed(seed)
    model = LEGO(img_size=16, in_chans=in_chans, num_classes=num_classes, regions=(4, 8, 16), patch_sizes=(2, 4, 2),
                 depths=(1, 1, 1), embed_dim=32, num_heads=2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    return model.eval()


class _Bricks(torch.nn.Module):
    """The model with a fixed brick selection, for fvcore (which traces tensor inputs only)."""

    def __init__(self, model, bricks):
        super().__init__()
        self.model, self.bricks = model, bricks

    def forward(self, x, sigma, labels):
        return self.model(x, sigma, labels, bricks=self.bricks)


@requires_fixture('lego_s_pg_64')
def test_fixture_lego_s_pg_64():
    model = timm.create_model('lego_s_pg_64')

    def forward(m, inputs):
        x, sigma, labels = inputs['x'], inputs['sigma'], inputs['class_labels']
        raw, outs = m.forward_intermediates(x, sigma, labels)
        return dict(
            D_x=m.precondition(x, sigma, raw), F_x=raw, **{f'F_x_brick{i}': f for i, f in enumerate(outs)},
            D_x_skip_official=m(x, sigma, labels, bricks=[0, 1, 2]),  # the release's "skip": returns at the last brick
            D_x_skip_top=m(x, sigma, labels, bricks=[0, 1]),
            D_x_cfg4=diffusion.guided_denoise(m, x, sigma, labels, cfg_scale=4.0),
        )

    errors = assert_matches_fixture('lego_s_pg_64', model, checkpoint_filter_fn, forward)
    assert set(errors) == {'D_x', 'F_x', 'F_x_brick0', 'F_x_brick1', 'F_x_brick2', 'D_x_skip_official',
                           'D_x_skip_top', 'D_x_cfg4'}
    fx = load_fixture('lego_s_pg_64')
    with torch.no_grad():  # int labels (-1 = null) are the same input as the one-hot / all-zero rows
        ours = model(fx['inputs']['x'], fx['inputs']['sigma'], fx['inputs']['class_idx'])
    assert relative_error(ours, fx['expected']['D_x']) <= fx['meta']['rtol_max']


@requires_fixture('lego_s_pg_64')
def test_fresh_pos_embed_is_the_official_table():
    from safetensors.torch import load_file
    fixed = load_file(str(fixtures_root() / 'lego_s_pg_64' / 'fixed.safetensors'))
    for i, grid in enumerate((2, 2, 32)):
        torch.testing.assert_close(sincos_pos_embed_2d(384, grid), fixed[f'model.model.{i}.pos_embed'])


@requires_manifests()
@pytest.mark.parametrize('name', VARIANTS)
def test_manifest_params_keys_and_shapes_on_meta(name):
    """Every variant, built on the meta device: exact param count and the official keys map onto ours, shape for
    shape (a strict load of the big ones without their memory)."""
    spec = _manifest(name)
    with torch.device('meta'):
        model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == spec['param_count']
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == spec['trainable_param_count']
    shapes = {k: v['shape'] if isinstance(v, dict) else v for k, v in spec['keys'].items()}
    official = {k: torch.empty(shape, device='meta') for k, shape in shapes.items()}
    ours = model.state_dict()
    converted = checkpoint_filter_fn(official, model)
    assert converted.keys() == ours.keys()
    assert all(converted[k].shape == ours[k].shape for k in ours)
    assert tuple(model.pretrained_cfg['input_size']) == tuple(spec['input']['x'][1:])
    assert model.num_classes == spec['input']['class_labels'][1]


@requires_manifests()
@pytest.mark.parametrize('name', SMALL)
def test_small_variants_load_strictly(name):
    model = _official_model(name)
    assert sum(p.numel() for p in model.parameters()) == _manifest(name)['param_count']
    wrapped = {'ema': {'module.' + k: v for k, v in manifest_state_dict(name).items()}}
    assert checkpoint_filter_fn(wrapped, model).keys() == model.state_dict().keys()
    assert checkpoint_filter_fn(model.state_dict(), model).keys() == model.state_dict().keys()


@requires_manifests()
def test_skipping_bricks_changes_output_and_cuts_macs():
    name = 'lego_s_pg_64'
    model = _official_model(name)
    x, sigma, labels = bench.example_inputs(model, 1)
    calls = [0] * model.num_bricks
    hooks = [b.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, b in enumerate(model.bricks)]
    with torch.no_grad():
        full, per_brick = model.forward_intermediates(x, sigma, labels, precondition=True)
        assert calls == [1, 1, 1]
        skip = model(x, sigma, labels, bricks=[0, 1])
        assert calls == [2, 2, 1]  # the top brick really did not run
    for h in hooks:
        h.remove()
    assert relative_error(skip, full) > 1e-2
    torch.testing.assert_close(skip, per_brick[1])  # skipping the top brick = brick 1's denoised estimate

    gmacs, _ = bench.count_macs(model, (x, sigma, labels))
    gmacs_skip, _ = bench.count_macs(_Bricks(model, [0, 1]), (x, sigma, labels))
    # the official count less the per-region adaLN repeats we avoid: sum (regions - 1) * (6 depth + 2) * D^2
    saved = sum(((64 // b.region) ** 2 - 1) * (6 * len(b.blocks) + 2) * 384 ** 2 for b in model.bricks) / 1e9
    assert gmacs == pytest.approx(_manifest(name)['flops_g'] - saved, rel=1e-3)
    assert gmacs_skip < 0.25 * gmacs  # the 64x64 brick is ~80% of the compute


def test_brick_selection_is_validated_and_any_subset_runs():
    model = _tiny()
    x, sigma, labels = model.example_inputs(2)
    with torch.no_grad():
        full = model(x, sigma, labels)
        torch.testing.assert_close(model(x, sigma, labels, bricks=[-3, -2, -1]), full)
        no_middle = model(x, sigma, labels, bricks=[0, 2])
        top_only = model(x, sigma, labels, bricks=[2])  # no earlier output: brick 2 gets F = 0 in that slot
    assert relative_error(no_middle, full) > 1e-3 and relative_error(top_only, full) > 1e-3
    with pytest.raises(ValueError, match='no brick'):
        model(x, sigma, labels, bricks=[])
    with pytest.raises(ValueError, match='out of range'):
        model(x, sigma, labels, bricks=[3])
    with pytest.raises(ValueError, match='multiples of its largest brick region'):
        model(torch.randn(1, 3, 24, 24), sigma[:1])
    with torch.no_grad():  # non-square inputs work (the official code asserts square region grids)
        assert model(torch.randn(1, 3, 16, 32), torch.ones(1), labels[:1]).shape == (1, 3, 16, 32)


def test_denoiser_contract():
    model = _tiny(num_classes=0, in_chans=1).train()
    x, sigma = model.example_inputs(2)
    out = model(x, sigma)
    assert out.shape == x.shape and model.num_classes == 0
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert all(not p.requires_grad for n, p in model.named_parameters() if n.endswith('pos_embed'))
    with torch.no_grad():  # forward = precondition(forward_features)
        torch.testing.assert_close(model.precondition(x, sigma, model.forward_features(x, sigma)), model(x, sigma))
    with pytest.raises(NotImplementedError, match='denoiser'):
        model.reset_classifier(10)
    with pytest.raises(NotImplementedError, match='denoiser'):
        model.get_classifier()
    fresh = LEGO(img_size=16, regions=(4, 16), patch_sizes=(2, 2), depths=(1, 1), embed_dim=32, num_heads=2,
                 num_classes=10).eval()
    with torch.no_grad():  # the official init zeroes the output layers: D = c_skip x
        torch.testing.assert_close(fresh(x.expand(-1, 3, -1, -1), sigma),
                                   0.25 / (sigma.reshape(-1, 1, 1, 1) ** 2 + 0.25) * x.expand(-1, 3, -1, -1))


def test_sampler_is_deterministic_per_seed():
    model = _tiny()
    a = diffusion.generate(model, [0, 1], class_idx=3, num_steps=4, cfg_scale=2.0)
    b = diffusion.generate(model, [0, 1], class_idx=3, num_steps=4, cfg_scale=2.0)
    assert a.shape == (2, 3, 16, 16) and a.dtype == torch.float64 and torch.isfinite(a).all()
    assert torch.equal(a, b)
    torch.testing.assert_close(diffusion.generate(model, [1], class_idx=3, num_steps=4, cfg_scale=2.0)[0], a[1])
    assert not torch.equal(diffusion.generate(model, [2, 1], class_idx=3, num_steps=4, cfg_scale=2.0)[0], a[0])
    churn = dict(class_idx=None, num_steps=4, S_churn=5.)
    torch.testing.assert_close(diffusion.generate(model, [0, 1], **churn), diffusion.generate(model, [0, 1], **churn))
    sigmas = diffusion.karras_sigmas(18)
    assert sigmas[0] == pytest.approx(80.) and sigmas[-2] == pytest.approx(0.002) and sigmas[-1] == 0


def test_sampler_in_bf16_keeps_its_state_in_float64_and_follows_fp32():
    model = _tiny()
    linear_dtypes = []
    first_linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    first_linear.register_forward_hook(lambda m, i, o: linear_dtypes.append(o.dtype))
    for guided in (dict(class_idx=3, num_steps=4, cfg_scale=2.0), dict(class_idx=None, num_steps=8)):
        fp32 = diffusion.generate(model, [0, 1], **guided)
        assert set(linear_dtypes) == {torch.float32}
        linear_dtypes.clear()
        bf16 = diffusion.generate(model, [0, 1], precision='bf16', **guided)
        assert set(linear_dtypes) == {torch.bfloat16}  # every denoiser call ran under bf16 autocast
        linear_dtypes.clear()
        assert bf16.dtype == torch.float64 and torch.isfinite(bf16).all()
        # measured here: 0.0062 (guided, 4 steps) and 0.0018 (8 steps) of the largest |value|
        assert 0 < relative_error(bf16, fp32) < 0.03
    with pytest.raises(InputError, match="precision 'fp16'"):
        diffusion.generate(model, [0], num_steps=2, precision='fp16')


def test_brick_schedule_skips_late_steps_and_cuts_compute():
    model = _tiny()
    n_steps = 6
    schedule = diffusion.BrickSchedule.skip_top(model.num_bricks, start=0.5)
    assert [len(b) for b in schedule.bricks_at(n_steps, 3)] == [3, 3, 3, 3, 2, 2]
    calls = [0] * model.num_bricks
    hooks = [b.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, b in enumerate(model.bricks)]
    full = diffusion.generate(model, [0, 1], class_idx=1, num_steps=n_steps, cfg_scale=1.5)
    full_calls, calls[:] = list(calls), [0] * model.num_bricks
    skipped = diffusion.generate(model, [0, 1], class_idx=1, num_steps=n_steps, cfg_scale=1.5, schedule=schedule)
    for h in hooks:
        h.remove()
    evals = 2 * n_steps - 1  # Heun: two denoiser calls a step, one in the last
    assert full_calls == [evals] * 3
    assert calls == [evals, evals, 2 * 4]  # steps 0-3 run the top brick (both Heun calls), 4-5 skip it
    assert relative_error(skipped, full) > 1e-3
    inputs = model.example_inputs(1)
    macs = [bench.count_macs(_Bricks(model, b), inputs)[0] for b in ([0, 1, 2], [0, 1])]
    total_full, total_skip = evals * macs[0], 8 * macs[0] + (evals - 8) * macs[1]
    assert total_skip < total_full and macs[1] < macs[0]


@requires_fixture('lego_s_pg_64')
def test_cli_sample_writes_a_grid(tmp_path, capsys):
    from PIL import Image
    from safetensors.torch import save_file
    from zoo.cli import main
    model = timm.create_model('lego_s_pg_64')
    weights = tmp_path / 'lego.safetensors'
    save_file(checkpoint_filter_fn(load_fixture('lego_s_pg_64')['state_dict'], model), str(weights))
    out = tmp_path / 'grid.png'
    args = ['sample', 'lego_s_pg_64', '--checkpoint', str(weights), '--steps', '2', '--class', '3', '--num', '1',
            '--skip-bricks', '1', '--skip-ratio', '0', '--out', str(out)]  # step 0 runs every brick, step 1 skips
    assert main(args) == 0
    assert 'wrote' in capsys.readouterr().out
    with Image.open(out) as img:
        assert img.size == (64, 64) and img.mode == 'RGB'
    assert main(['sample', 'emov2_1m', '--out', str(tmp_path / 'x.png')]) == 2


def test_cli_sample_bf16(tmp_path, capsys, monkeypatch):
    from PIL import Image
    from zoo.cli import main
    from zoo.precision import autocast
    used = []
    monkeypatch.setattr(diffusion, 'autocast',
                        lambda precision, where: used.append(precision) or autocast(precision, where))
    out = tmp_path / 'grid.png'
    args = ['sample', 'lego_s_pg_64', '--steps', '2', '--num', '1', '--class', '3', '--out', str(out)]  # random init
    assert main(args + ['--precision', 'bf16']) == 0 and used == ['bf16'] * 3  # Heun: 2 denoiser calls, then 1
    assert 'wrote' in capsys.readouterr().out
    with Image.open(out) as img:
        assert img.size == (64, 64)
    with pytest.raises(SystemExit) as refused:  # argparse's choices
        main(args + ['--precision', 'fp16'])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "--precision: invalid choice: 'fp16'" in err and 'bf16' in err


_LEGACY_MODULE = textwrap.dedent('''
    import os
    import torch

    class EDMPrecondLEGO(torch.nn.Module):
        """Stands in for a persistence-pickled EDM network: unpickling it runs this code."""

        def __init__(self, tensors):
            super().__init__()
            self.tensors = tensors

        def state_dict(self, *args, **kwargs):
            return dict(self.tensors)

        def __setstate__(self, state):
            super().__setstate__(state)
            open(os.environ['LEGO_PICKLE_MARKER'], 'w').write('code ran')
''')


@requires_fixture('lego_s_pg_64')
def test_code_pickles_need_trust_pickle(tmp_path, monkeypatch, capsys):
    import pickle
    import sys
    from zoo.cli import main
    from zoo.weights import convert
    code = tmp_path / 'code'
    code.mkdir()
    (code / 'legacy_lego.py').write_text(_LEGACY_MODULE)
    marker = tmp_path / 'marker'
    monkeypatch.setenv('LEGO_PICKLE_MARKER', str(marker))
    monkeypatch.syspath_prepend(str(code))
    import legacy_lego
    official = load_fixture('lego_s_pg_64')['state_dict']
    pkl = tmp_path / 'LEGO-S-PG-64.pkl'
    with open(pkl, 'wb') as f:  # the EDM training-pickle layout
        pickle.dump({'ema': legacy_lego.EDMPrecondLEGO(official), 'loss_fn': None, 'augment_pipe': None}, f)
    sys.modules.pop('legacy_lego')
    sys.path.remove(str(code))

    with pytest.raises(WeightsError, match='--trust-pickle') as err:
        convert('lego_s_pg_64', pkl, tmp_path / 'out')
    assert 'runs that code' in str(err.value)
    assert main(['weights', 'convert', 'lego_s_pg_64', '--checkpoint', str(pkl), '--out', str(tmp_path / 'o')]) == 2
    assert '--trust-pickle' in capsys.readouterr().err
    with pytest.raises(WeightsError, match='pretrained=False|--trust-pickle|code'):
        timm.create_model('lego_s_pg_64', pretrained=True, pretrained_cfg_overlay=dict(file=str(pkl)))
    assert not marker.exists() and not (tmp_path / 'out' / 'model.safetensors').exists()

    with pytest.raises(WeightsError, match='--code-path'):
        convert('lego_s_pg_64', pkl, tmp_path / 'out', trust_pickle=True)
    digest = convert('lego_s_pg_64', pkl, tmp_path / 'out', trust_pickle=True, code_path=[code])
    assert marker.read_text() == 'code ran' and len(digest) == 64
    assert str(code.resolve()) not in sys.path
    loaded = timm.create_model(f'local-dir:{tmp_path / "out"}', pretrained=True)
    expected = checkpoint_filter_fn(official, loaded)
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
