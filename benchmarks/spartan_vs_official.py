"""Our SpaRTAN-T vs the official henry-pay/SpaRTAN model, side by side, on the same weights.

The official code is not part of this project: point --official at a checkout of henry-pay/SpaRTAN
(the folder holding `src/model/spartan.py`, commit 1715a430), kept outside the repo.

    python benchmarks/spartan_vs_official.py --official /tmp/official/spartan --batch-size 1 32
    python benchmarks/spartan_vs_official.py --official /tmp/official/spartan --threads 1 --cpu-time

Checks first that both give the same logits on the same weights (the spartan_tiny fixture's non-trivial
weights when the fixtures are present, else perturbed random ones), in float32, channels_last and float64,
and how far ours in bf16 is from them; then times eager CPU inference for each batch size in NCHW and
channels_last, after warm-up: the official model in fp32, ours and `fused` (ours after
`timm.utils.reparameterize_model`) in each `--precision` (fp32, bf16 autocast; default both), and prints
ours / official in the best layout of each (`common.py`). On a machine shared with other jobs, wall-clock
timings with several threads swing widely; `--threads 1 --cpu-time` counts only this thread's CPU time.

The official model cannot be moved to channels_last with `model.to(memory_format=...)` (its 5-D complex
weight makes that call raise) and cannot run in float64 (its complex step casts to float32); both are
reported. Its channels_last runs convert the 4-D weights one by one instead (as `common.to_layout` does for
every model).
"""
import argparse
import importlib
import sys
import types

import timm
import torch
from timm.utils import reparameterize_model

import zoo  # noqa: F401
from zoo.models.spartan import checkpoint_filter_fn
from zoo.testing import has_fixture, load_fixture, relative_error

import common  # benchmarks/common.py

OFFICIAL_T = dict(num_layer=4, layer_depths=[3, 3, 12, 2], expand_ratios=[4, 4, 2, 2], dims=[64, 128, 256],
                  init_dim=32, dropout=0.1)


def load_official(path: str):
    """`src.model.spartan.SpaRTAN`; omegaconf (a type hint only) is stubbed if it is not installed."""
    sys.path.insert(0, f'{path}/src')
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        stub = types.ModuleType('omegaconf')
        stub.DictConfig = dict
        sys.modules['omegaconf'] = stub
    return importlib.import_module('model.spartan').SpaRTAN


@torch.no_grad()
def perturb_(model: torch.nn.Module, seed: int = 0):
    """Non-trivial weights: the default init scales every residual branch by 1e-5, hiding most mistakes."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.state_dict().items():
        if not p.is_floating_point():
            continue
        if name.endswith('running_var'):
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
        elif 'scale_' in name or name.endswith('gamma'):
            p.copy_(torch.rand(p.shape, generator=gen) * 0.5)
        else:
            p.add_(torch.randn(p.shape, generator=gen) * 0.1 * (p.std() if p.numel() > 1 else 1.))


def official_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """The official model in channels_last: its 4-D weights one by one (`.to(memory_format)` raises)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.dim() == 4:
            t.data = t.data.to(memory_format=torch.channels_last)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='henry-pay/SpaRTAN checkout (outside this repo)')
    parser.add_argument('--img-size', type=int, default=256)
    parser.add_argument('--cpu-time', action='store_true',
                        help='time with the thread CPU clock (needs --threads 1): steadier on a shared machine')
    common.add_arguments(parser, batch_size=(1, 32), warmup=3, iters=10)
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error('--cpu-time measures one thread: use it with --threads 1')
    common.setup(parser, args)

    torch.manual_seed(0)
    official = load_official(args.official)(1000, **OFFICIAL_T).eval()
    if has_fixture('spartan_tiny'):
        official.load_state_dict(load_fixture('spartan_tiny')['state_dict'])
        source = 'the spartan_tiny fixture weights'
    else:
        perturb_(official)
        source = 'perturbed random weights'
    ours = timm.create_model('spartan_tiny').eval()
    ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
    fused = reparameterize_model(ours)

    x = torch.randn(2, 3, args.img_size, args.img_size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    print(f'outputs on {source}, max relative difference to the official float32 NCHW logits '
          f'(fixture tolerance 1e-4):')
    with torch.inference_mode():
        ref = official(x)
        print(f'  ours                    {relative_error(ours(x), ref):.2e}')
        print(f'  ours, reparameterized   {relative_error(fused(x), ref):.2e}')
        cl = timm.create_model('spartan_tiny').eval()
        cl.load_state_dict(ours.state_dict())
        cl = cl.to(memory_format=torch.channels_last)
        print(f'  ours, channels_last     {relative_error(cl(x_cl), ref):.2e}')
        print(f'  ours, float64           {relative_error(cl.double()(x.double()), ref):.2e}')
        for who, model in (('ours', ours), ('ours, reparam.', fused)):
            for precision, err in common.precision_errors(model, (x,), ref, args.precision).items():
                print(f'  {who + ", " + precision + " autocast":<23} {err:.2e}')
        del cl
        try:  # on a copy: a failing .to() leaves the weights it reached converted
            load_official(args.official)(1000, **OFFICIAL_T).to(memory_format=torch.channels_last)
            print('  official .to(channels_last): works')
        except RuntimeError as e:
            print(f'  official .to(memory_format=torch.channels_last) fails: {e}')
        off_cl = official_channels_last(load_official(args.official)(1000, **OFFICIAL_T).eval())
        off_cl.load_state_dict(official.state_dict())
        print(f'  official, channels_last by hand {relative_error(off_cl(x_cl), ref):.2e}')
        try:
            load_official(args.official)(1000, **OFFICIAL_T).double().eval()(x.double())
            print('  official float64: works')
        except RuntimeError as e:
            print(f'  official float64 fails: {str(e).splitlines()[0]}')

    print()
    results = common.compare(
        [common.Contender('official', official, official=True), common.Contender('ours', ours),
         common.Contender('fused', fused)],
        lambda bs: (torch.randn(bs, 3, args.img_size, args.img_size),), args,
        clock='thread' if args.cpu_time else 'wall', unit='img/s')
    results.print_ratios('spartan_tiny')


if __name__ == '__main__':
    main()
