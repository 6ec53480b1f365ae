"""bf16 numerics, stated per family: each family's main output under bfloat16 autocast against its fp32 output,
on the reference fixture's inputs and (official-named, converted) weights, as built and after timm's
`reparameterize_model` (the inference form: folded norms, oneDNN-fused layers), in NCHW and channels-last (where
those layers run on prepacked kernels), whose fp32 output must still match the official one to the fixture's
tolerance.

The error is the fixtures' measure, max|bf16 - fp32| / max|fp32|. bf16 keeps 8 bits of mantissa (a relative
rounding step of 2^-8 = 0.0039 per value), so one matmul is good to about that, and a deep net's error is what
its depth, norms and residual sums make of it: that is why each family has its own bound. The README's
precision table gives the measured figures; each bound sits above the figure measured here (2 threads,
oneDNN's AMX kernels) with room for other kernels' summation orders, and well below what a broken bf16 path
(an op fed unconverted inputs, an fp32-only op skipped, a norm in bf16) produces, which is O(0.1-1).
"""
import pytest
import torch
from timm.utils import reparameterize_model

import zoo
from zoo.bench import _to_layout, to_channels_last
from zoo.precision import autocast
from zoo.testing import load_fixture, relative_error

from ..helpers import requires_fixture


def _classifier(m, inputs):
    return m(inputs['x'])


def _lego(m, inputs):
    return m(inputs['x'], inputs['sigma'], inputs['class_labels'])


def _rtnet(m, inputs):
    return m(inputs['x'], inputs['rois'])


# fixture -> (model name, forward on the fixture's inputs, bound on the bf16 relative error)
CASES = {
    'emov2_1m': ('emov2_1m', _classifier, 0.02),
    'spartan_tiny': ('spartan_tiny', _classifier, 0.012),
    'raftmlp_s': ('raftmlp_s', _classifier, 0.02),
    'strip_mlp_t_light': ('strip_mlp_t_light', _classifier, 0.02),
    'ninformer_cifar10': ('ninformer_cifar10', _classifier, 0.03),
    'p3d63': ('p3d63', _classifier, 0.015),
    'lego_s_pg_64': ('lego_s_pg_64', _lego, 0.015),
    'inception_resnet_v1': ('inception_resnet_v1', _classifier, 0.01),
    'inception_resnet_v1_vggface2': ('inception_resnet_v1_facenet.vggface2', _classifier, 0.02),
    'rtnet50_fcn11': ('rtnet50_fcn11', _rtnet, 0.04),
}


def bf16_errors(fixture: str, reparameterized: bool = False, channels_last: bool = False):
    """(bf16 vs our fp32, our fp32 vs the official fp32 output) of `fixture`'s main output; `reparameterized`:
    of the model after `timm.utils.reparameterize_model` (folded norms, fused oneDNN layers); `channels_last`:
    weights and inputs channels-last (where the fused layers run on prepacked kernels)."""
    name, forward, _ = CASES[fixture]
    fx = load_fixture(fixture)
    model = zoo.create_model(name)
    model.load_state_dict(zoo.hub.family_filter(model)(fx['state_dict'], model))
    model.eval()
    if reparameterized:
        model = reparameterize_model(model)
    inputs = fx['inputs']
    if channels_last:
        model = to_channels_last(model)
        inputs = dict(zip(inputs, _to_layout(tuple(inputs.values()), channels_last=True)))
    with torch.inference_mode():
        fp32 = forward(model, inputs)
        with autocast('bf16', model):
            bf16 = forward(model, inputs)
    assert bf16.dtype in (torch.bfloat16, torch.float32)
    expected = next(v for k, v in fx['expected'].items() if k in ('logits', 'D_x'))
    return relative_error(bf16.float(), fp32), relative_error(fp32, expected)


@pytest.mark.parametrize('reparameterized,channels_last', [(False, False), (True, False), (True, True)],
                         ids=['as-built', 'reparameterized', 'reparameterized-channels-last'])
@pytest.mark.parametrize('fixture', [pytest.param(f, marks=requires_fixture(f)) for f in CASES])
def test_bf16_error_within_the_family_bound(fixture, reparameterized, channels_last):
    err, fp32_err = bf16_errors(fixture, reparameterized, channels_last)
    bound = CASES[fixture][2]
    assert fp32_err <= 1e-4  # the fp32 path is the fixture's, so the comparison is against the official output
    assert 0 < err <= bound, f'{fixture}: bf16 relative error {err:.4g} (bound {bound})'


if __name__ == '__main__':  # prints the table the README quotes
    torch.set_num_threads(2)
    for fixture in CASES:
        (err, fp32_err), (fused_err, fused_fp32_err) = bf16_errors(fixture), bf16_errors(fixture, True)
        print(f'{fixture:32s} bf16 {err:.4f}  fp32 {fp32_err:.1e}  reparameterized: bf16 {fused_err:.4f}  '
              f'fp32 {fused_fp32_err:.1e}')
