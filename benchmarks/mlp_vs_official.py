"""RaftMLP and NiNformer: ours vs the official code, side by side, on the same weights.

The official code is not part of this project: point the flags at checkouts kept outside the repo,
  --official-raftmlp   okojoalg/raft-mlp (the folder holding `libs/models.py`)
  --official-ninformer Abdullah-88/NiNformer (the folder holding `ninformer.py`; its `train.py` starts
                       training when imported, so the image classifier it defines is rebuilt here)
Both need `einops` importable (`pip install einops`, or put a folder holding it on PYTHONPATH).

    python benchmarks/mlp_vs_official.py --official-raftmlp /tmp/raftmlp_official \\
        --official-ninformer /tmp/ninformer_official --batch-size 1 32

For each model it first checks that both give the same logits on the same random weights (perturbed, so
that no LayerNorm is the identity), then times eager CPU inference for each batch size in NCHW and
channels_last after warm-up. For RaftMLP it also times ours after `timm.utils.reparameterize_model`
(embedding kernels merged into one convolution).
"""
import argparse
import importlib
import sys

import timm
import torch
import torch.nn as nn
from timm.utils import reparameterize_model

import zoo  # noqa: F401
from zoo.bench import _time_calls
from zoo.models import ninformer as zoo_ninformer
from zoo.models import raftmlp as zoo_raftmlp
from zoo.testing import relative_error

# configs/settings/imagenet-raft-mlp-cross-mlp-emb-{s,m,l}.yaml
RAFTMLP_DIMS = {
    'raftmlp_s': (64, 128, 256, 512),
    'raftmlp_m': (96, 192, 384, 768),
    'raftmlp_l': (128, 192, 512, 1024),
}


def _import_from(path: str, module: str):
    sys.path.insert(0, path)
    try:
        importlib.import_module('einops')
    except ImportError:
        sys.exit('The official code needs einops: pip install einops (or add a folder holding it to PYTHONPATH).')
    return importlib.import_module(module)


def official_raftmlp(path: str, variant: str) -> nn.Module:
    models = _import_from(path, 'libs.models')
    layers = [
        dict(depth=depth, dim=dim, patch_size=patch, raft_size=2, embedding_kernels=kernels)
        for depth, dim, patch, kernels in zip(
            (2, 2, 6, 2), RAFTMLP_DIMS[variant], (4, 2, 2, 2), ([4, 8], [2, 4], [2, 4], [2]))
    ]
    return models.RaftMLP(
        layers=layers, in_channels=3, pretrained_image_size=224, num_classes=1000, token_expansion_factor=2,
        channel_expansion_factor=4, dropout=0., token_mixing_type='ser_pm', embedding_type='emb_cross_mlp',
        shortcut=False, drop_path_rate=0.1)


def official_ninformer(path: str) -> nn.Module:
    ninformer = _import_from(path, 'ninformer')

    class NiNformerImageClassification(ninformer.NiNformer):
        """train.py's classifier (its defaults: the CIFAR-10 configuration), rebuilt as train.py defines it."""

        def __init__(self, image_size=32, patch_size=4, in_channels=3, num_classes=10, d_model=256, d_ffn=512,
                     seq_len=64, num_layers=4, dropout=0.5):
            super().__init__(d_model, d_ffn, seq_len, num_layers, dropout)
            self.patcher = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)
            self.classifier = nn.Linear(d_model, num_classes)

        def forward(self, x):
            patches = self.patcher(x)
            batch_size, num_channels, _, _ = patches.shape
            patches = patches.permute(0, 2, 3, 1)
            patches = patches.view(batch_size, -1, num_channels)
            embedding = self.model(patches)
            embedding = embedding.mean(dim=1)
            return self.classifier(embedding)

    return NiNformerImageClassification()


def compare(title, official, ours, filter_fn, img_size, args, reparameterize=False):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in official.parameters():  # no LayerNorm left at the identity
            p.add_(torch.randn_like(p) * 0.05)
    official.eval()
    ours.load_state_dict(filter_fn(official.state_dict(), ours))
    ours.eval()
    models = {'official': official, 'ours': ours}
    if reparameterize:
        models['fused'] = reparameterize_model(ours)
    x = torch.randn(2, 3, img_size, img_size)
    with torch.inference_mode():
        ref = official(x)
        errors = {name: relative_error(m(x), ref) for name, m in models.items() if name != 'official'}
    print(f'\n{title}: max relative difference vs official: '
          + ', '.join(f'{name} {err:.2e}' for name, err in errors.items()) + ' (fixture tolerance 1e-4)')

    names = list(models)
    print(f'{"batch":>5}  {"layout":>13}  ' + '  '.join(f'{n + " img/s":>13}' for n in names) + '  '
          + '  '.join(f'{n + "/official":>15}' for n in names[1:]))
    best = {}
    for bs in args.batch_size:
        x = torch.randn(bs, 3, img_size, img_size)
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            xin = x.contiguous(memory_format=fmt)
            speeds = []
            for name in names:
                model = models[name].to(memory_format=fmt)

                def step():
                    with torch.inference_mode():
                        model(xin)
                _, mean = _time_calls(step, args.warmup, args.iters)
                speeds.append(bs / mean)
                best[(name, bs)] = max(best.get((name, bs), 0.0), speeds[-1])
            layout = 'channels_last' if channels_last else 'nchw'
            print(f'{bs:>5}  {layout:>13}  ' + '  '.join(f'{s:>13.1f}' for s in speeds) + '  '
                  + '  '.join(f'{s / speeds[0]:>15.2f}' for s in speeds[1:]))
    for bs in args.batch_size:
        print(f'batch {bs}, best layout of each: ' + ', '.join(
            f'{name} / official = {best[(name, bs)] / best[("official", bs)]:.2f}' for name in names[1:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official-raftmlp', help='okojoalg/raft-mlp checkout (outside this repo)')
    parser.add_argument('--official-ninformer', help='Abdullah-88/NiNformer checkout (outside this repo)')
    parser.add_argument('--raftmlp-variant', default='raftmlp_s', choices=sorted(RAFTMLP_DIMS))
    parser.add_argument('--batch-size', nargs='+', type=int, default=[1, 32])
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    if not (args.official_raftmlp or args.official_ninformer):
        parser.error('give --official-raftmlp and/or --official-ninformer')
    torch.set_num_threads(args.threads)

    if args.official_raftmlp:
        compare(
            f'{args.raftmlp_variant} (224x224)', official_raftmlp(args.official_raftmlp, args.raftmlp_variant),
            timm.create_model(args.raftmlp_variant), zoo_raftmlp.checkpoint_filter_fn, 224, args,
            reparameterize=True)
    if args.official_ninformer:
        compare(
            'ninformer_cifar10 (32x32)', official_ninformer(args.official_ninformer),
            timm.create_model('ninformer_cifar10'), zoo_ninformer.checkpoint_filter_fn, 32, args)


if __name__ == '__main__':
    main()
