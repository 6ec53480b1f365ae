"""RaftMLP and NiNformer: ours vs the official code, side by side, on the same weights.

The official code is not part of this project: point the flags at checkouts kept outside the repo,
  --official-raftmlp   okojoalg/raft-mlp (the folder holding `libs/models.py`)
  --official-ninformer Abdullah-88/NiNformer (the folder holding `ninformer.py`; its `train.py` starts
                       training when imported, so the image classifier it defines is rebuilt here)
Both need `einops` importable (`pip install einops`, or put a folder holding it on PYTHONPATH).

    python benchmarks/mlp_vs_official.py --official-raftmlp /tmp/official/raftmlp \\
        --official-ninformer /tmp/official/ninformer --batch-size 1 32

For each model it first checks that both give the same logits on the same random weights (perturbed, so
that no LayerNorm is the identity), and how far ours in bf16 is from them, then times eager CPU inference
for each batch size in NCHW and channels_last after warm-up: the official model in fp32, ours in each
`--precision` (fp32, bf16 autocast; default both), and prints ours / official in the best layout of each
(`common.py`). It also times ours after `timm.utils.reparameterize_model` (`fused`: RaftMLP's embedding
kernels merged into one convolution; NiNformer has nothing to reparameterize).
"""
import argparse
import importlib
import sys

import timm
import torch
import torch.nn as nn
from timm.utils import reparameterize_model

import zoo  # noqa: F401
from zoo.models import ninformer as zoo_ninformer
from zoo.models import raftmlp as zoo_raftmlp
from zoo.testing import relative_error

import common  # benchmarks/common.py

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


def compare(title, official, ours, filter_fn, img_size, args):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in official.parameters():  # no LayerNorm left at the identity
            p.add_(torch.randn_like(p) * 0.05)
    official.eval()
    ours.load_state_dict(filter_fn(official.state_dict(), ours))
    ours.eval()
    models = {'official': official, 'ours': ours, 'fused': reparameterize_model(ours)}
    x = torch.randn(2, 3, img_size, img_size)
    with torch.inference_mode():
        ref = official(x)
        errors = {name: relative_error(m(x), ref) for name, m in models.items() if name != 'official'}
    print(f'\n{title}: max relative difference vs official: '
          + ', '.join(f'{name} {err:.2e}' for name, err in errors.items()) + ' (fixture tolerance 1e-4)')
    for name in errors:
        low = common.precision_errors(models[name], (x,), ref, args.precision)
        if low:
            print(f'  {name} vs the official fp32 logits: {common.format_errors(low)}')

    results = common.compare(
        [common.Contender(name, model, official=name == 'official') for name, model in models.items()],
        lambda bs: (torch.randn(bs, 3, img_size, img_size),), args, unit='img/s')
    results.print_ratios(title)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official-raftmlp', help='okojoalg/raft-mlp checkout (outside this repo)')
    parser.add_argument('--official-ninformer', help='Abdullah-88/NiNformer checkout (outside this repo)')
    parser.add_argument('--raftmlp-variant', default='raftmlp_s', choices=sorted(RAFTMLP_DIMS))
    common.add_arguments(parser, batch_size=(1, 32), warmup=3, iters=10)
    args = parser.parse_args()
    if not (args.official_raftmlp or args.official_ninformer):
        parser.error('give --official-raftmlp and/or --official-ninformer')
    common.setup(parser, args)

    if args.official_raftmlp:
        compare(
            f'{args.raftmlp_variant} (224x224)', official_raftmlp(args.official_raftmlp, args.raftmlp_variant),
            timm.create_model(args.raftmlp_variant), zoo_raftmlp.checkpoint_filter_fn, 224, args)
    if args.official_ninformer:
        compare(
            'ninformer_cifar10 (32x32)', official_ninformer(args.official_ninformer),
            timm.create_model('ninformer_cifar10'), zoo_ninformer.checkpoint_filter_fn, 32, args)


if __name__ == '__main__':
    main()
