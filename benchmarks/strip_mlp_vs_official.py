"""Our Strip-MLP vs the official Med-Process/Strip_MLP model, side by side, on the same weights.

The official code is not part of this project: point --official at a checkout of Med-Process/Strip_MLP
(the folder holding `models/strip_mlp.py`), kept outside the repo. Only that file is imported (its unused
`matplotlib` import is stubbed when matplotlib is not installed).

    python benchmarks/strip_mlp_vs_official.py --official /tmp/official/strip_mlp --model strip_mlp_t_light \\
        --batch-size 1 32

Checks first that both give the same logits on the same random weights (perturbed so that GRN, the
BatchNorm statistics and every other parameter matter), and how far ours in bf16 is from them; then times
eager CPU inference for each batch size in NCHW and channels_last (a layout a model cannot run is
reported: the official `.view` calls need contiguous maps; with torch 2.14 they get them), after warm-up:
the official model in fp32, ours in each `--precision` (fp32, bf16 autocast; default both), and prints
ours / official in the best layout of each (`common.py`); speeds are from the median call.
"""
import argparse
import importlib.util
import os
import sys
import types

import timm
import torch

import zoo  # noqa: F401
from zoo.models.strip_mlp import checkpoint_filter_fn

import common  # benchmarks/common.py

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='Med-Process/Strip_MLP checkout (outside this repo)')
    parser.add_argument('--model', default='strip_mlp_t_light', choices=sorted(OFFICIAL_ARGS))
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                        help='cpu: process CPU time, steadier on a shared machine (use with --threads 1)')
    common.add_arguments(parser, batch_size=(1, 32), warmup=3, iters=10)
    args = parser.parse_args()
    common.setup(parser, args)

    torch.manual_seed(0)
    official = load_official(args.official)(
        img_size=224, patch_size=4, in_chans=3, num_classes=1000, alpha=3, **OFFICIAL_ARGS[args.model]).eval()
    perturb(official)
    ours = timm.create_model(args.model).eval()
    ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        ref = official(x)
    common.report_errors(args.model, ours, (x,), ref, args.precision)

    results = common.compare(
        [common.Contender('official', official, official=True), common.Contender('ours', ours),
         common.fused_contender(ours, (x,), ref, args.precision)],
        lambda bs: (torch.randn(bs, 3, 224, 224),), args, clock='process' if args.clock == 'cpu' else 'wall',
        unit='img/s')
    results.print_ratios(args.model)

if __name__ == '__main__':
    main()
