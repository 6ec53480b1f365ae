"""Our Strip-MLP vs the official Med-Process/Strip_MLP model, side by side, on the same weights.

The official code is not part of this project: point --official at a checkout of Med-Process/Strip_MLP
(the folder holding `models/strip_mlp.py`), kept outside the repo. Only that file is imported (its unused
`matplotlib` import is stubbed when matplotlib is not installed).

    python benchmarks/strip_mlp_vs_official.py --official /tmp/Strip_MLP --model strip_mlp_t_light --batch-size 1 32

Checks first that both give the same logits on the same random weights (perturbed so that GRN, the
BatchNorm statistics and every other parameter matter), then times eager CPU inference for each batch
size in NCHW and channels_last (the official model cannot run channels_last: its views fail), after
warm-up, alternating the two models so that both see the same load; speeds are from the median call.
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time
import types

import timm
import torch

import zoo  # noqa: F401
from zoo.models.strip_mlp import checkpoint_filter_fn
from zoo.testing import relative_error

# zoo model -> official StripMLPNet(embed_dim, layers), as models/build.py builds the ImageNet configs
OFFICIAL_ARGS = {
    'strip_mlp_t_light': dict(embed_dim=80, layers=[2, 2, 6, 2]),
    'strip_mlp_t': dict(embed_dim=80, layers=[2, 2, 12, 2]),
    'strip_mlp_s': dict(embed_dim=96, layers=[2, 2, 18, 2]),
    'strip_mlp_b': dict(embed_dim=112, layers=[2, 2, 18, 2]),
}


def load_official(path: str):
    try:
        import matplotlib.pyplot  # noqa: F401  (imported, unused, by the official file)
    except ImportError:
        pyplot = types.ModuleType('matplotlib.pyplot')
        pyplot.axis = None
        sys.modules.setdefault('matplotlib', types.ModuleType('matplotlib'))
        sys.modules['matplotlib.pyplot'] = pyplot
    spec = importlib.util.spec_from_file_location('official_strip_mlp', os.path.join(path, 'models', 'strip_mlp.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.StripMLPNet


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int = 0):
    """Random, non-trivial values for every parameter and BatchNorm statistic (GRN starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        noise = torch.randn(t.shape, generator=gen)
        if name.endswith('running_var'):
            t.copy_(0.5 + torch.rand(t.shape, generator=gen))
        elif name.endswith('running_mean') or name.endswith(('grn.gamma', 'grn.beta')):
            t.copy_(0.1 * noise)
        else:
            t.add_(0.02 * noise)


def fmt_name(channels_last: bool) -> str:
    return 'channels_last' if channels_last else 'nchw'


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='Med-Process/Strip_MLP checkout (outside this repo)')
    parser.add_argument('--model', default='strip_mlp_t_light', choices=sorted(OFFICIAL_ARGS))
    parser.add_argument('--batch-size', nargs='+', type=int, default=[1, 32])
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                        help='cpu: process CPU time, steadier on a shared machine (use with --threads 1)')
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == 'wall' else time.process_time
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    official = load_official(args.official)(
        img_size=224, patch_size=4, in_chans=3, num_classes=1000, alpha=3, **OFFICIAL_ARGS[args.model]).eval()
    perturb(official)
    ours = timm.create_model(args.model).eval()
    ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        err = relative_error(ours(x), official(x))
    print(f'{args.model}: outputs max relative difference {err:.2e} (fixture tolerance 1e-4)')

    print(f'{"batch":>5}  {"layout":>13}  {"official img/s":>14}  {"ours img/s":>10}  {"ours/official":>13}')
    best = {}
    for bs in args.batch_size:
        x = torch.randn(bs, 3, 224, 224)
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            xin = x.contiguous(memory_format=fmt)
            steps, failures = [], []
            for model in (official, ours):
                model = model.to(memory_format=fmt)

                def step(model=model):
                    with torch.inference_mode():
                        model(xin)
                try:
                    for _ in range(args.warmup):
                        step()
                except RuntimeError as e:  # the official model's views fail on channels_last tensors
                    failures.append(f'{type(model).__name__} fails ({str(e).splitlines()[0][:50]}...)')
                    step = None
                steps.append(step)
            times = [[], []]
            for _ in range(args.iters):  # alternate, so both see the same load
                for i, step in enumerate(steps):
                    if step is not None:
                        start = clock()
                        step()
                        times[i].append(clock() - start)
            speeds = [bs / statistics.median(t) if t else float('nan') for t in times]
            print(f'{bs:>5}  {fmt_name(channels_last):>13}  {speeds[0]:>14.1f}  {speeds[1]:>10.1f}  '
                  f'{speeds[1] / speeds[0]:>13.2f}  {"; ".join(failures)}')
            for who, s in zip(('official', 'ours'), speeds):
                if s == s:  # not nan
                    best[(who, bs)] = max(best.get((who, bs), 0.0), s)
    for bs in args.batch_size:
        print(f'batch {bs}, best layout of each: ours / official = {best[("ours", bs)] / best[("official", bs)]:.2f}')


if __name__ == '__main__':
    main()
