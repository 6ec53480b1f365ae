"""Our SpaRTAN-T vs the official henry-pay/SpaRTAN model, side by side, on the same weights.

The official code is not part of this project: point --official at a checkout of henry-pay/SpaRTAN
(the folder holding `src/model/spartan.py`, commit 1715a430), kept outside the repo.

    python benchmarks/spartan_vs_official.py --official /tmp/spartan_official --batch-size 1 32
    python benchmarks/spartan_vs_official.py --official /tmp/spartan_official --threads 1 --cpu-time

Checks first that both give the same logits on the same weights (the spartan_tiny fixture's non-trivial
weights when the fixtures are present, else perturbed random ones), in float32, channels_last and float64,
then times eager CPU inference for each batch size in NCHW and channels_last, after warm-up. `fused` is
ours after `timm.utils.reparameterize_model`. On a machine shared with other jobs, wall-clock timings with
several threads swing widely; `--threads 1 --cpu-time` counts only this thread's CPU time.

The official model cannot be moved to channels_last with `model.to(memory_format=...)` (its 5-D complex
weight makes that call raise) and cannot run in float64 (its complex step casts to float32); both are
reported. Its channels_last timing converts the 4-D weights one by one instead, which is its best layout.
"""
import argparse
import importlib
import statistics
import sys
import time
import types

import timm
import torch
from timm.utils import reparameterize_model

import zoo  # noqa: F401
from zoo.bench import _time_calls
from zoo.models.spartan import checkpoint_filter_fn
from zoo.testing import has_fixture, load_fixture, relative_error

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
            t.data = t.data.contiguous(memory_format=torch.channels_last)
    return model


def _time_cpu(step, warmup: int, iters: int):
    """(median, mean) seconds of thread CPU time per call, after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.thread_time()
        step()
        times.append(time.thread_time() - start)
    return statistics.median(times), sum(times) / len(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='henry-pay/SpaRTAN checkout (outside this repo)')
    parser.add_argument('--batch-size', nargs='+', type=int, default=[1, 32])
    parser.add_argument('--img-size', type=int, default=256)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--cpu-time', action='store_true',
                        help='time with the thread CPU clock (needs --threads 1): steadier on a shared machine')
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error('--cpu-time measures one thread: use it with --threads 1')
    torch.set_num_threads(args.threads)

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

    clock = 'thread CPU time' if args.cpu_time else 'wall clock'
    print(f'\n{args.threads} threads, eager CPU inference, images/s ({clock}, mean over {args.iters} calls after '
          f'{args.warmup} warm-up calls)')
    print(f'{"batch":>5}  {"layout":>13}  {"official":>9}  {"ours":>9}  {"fused":>9}  '
          f'{"ours/official":>13}  {"fused/official":>14}')
    best = {}
    for bs in args.batch_size:
        x = torch.randn(bs, 3, args.img_size, args.img_size)
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            xin = x.contiguous(memory_format=fmt)
            speeds = []
            for who, model in (('official', off_cl if channels_last else official), ('ours', ours), ('fused', fused)):
                if who != 'official':
                    model = model.to(memory_format=fmt)

                def step():
                    with torch.inference_mode():
                        model(xin)
                _, mean = (_time_cpu if args.cpu_time else _time_calls)(step, args.warmup, args.iters)
                speeds.append(bs / mean)
                best[(who, bs)] = max(best.get((who, bs), 0.0), bs / mean)
            layout = 'channels_last' if channels_last else 'nchw'
            print(f'{bs:>5}  {layout:>13}  {speeds[0]:>9.1f}  {speeds[1]:>9.1f}  {speeds[2]:>9.1f}  '
                  f'{speeds[1] / speeds[0]:>13.2f}  {speeds[2] / speeds[0]:>14.2f}')
    for bs in args.batch_size:
        print(f'batch {bs}, best layout of each: ours / official = {best[("ours", bs)] / best[("official", bs)]:.2f}, '
              f'reparameterized / official = {best[("fused", bs)] / best[("official", bs)]:.2f}')


if __name__ == '__main__':
    main()
