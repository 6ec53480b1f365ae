"""Our P3D ResNet vs the reference qijiezhao/pseudo-3d-pytorch model, side by side, on the same weights.

The reference code is not part of this project: point --official at a folder holding its `p3d_model.py`,
kept outside the repo.

    python benchmarks/p3d_vs_official.py --official /tmp/official/p3d --models p3d63 --batch-size 1 4

Checks that both give the same logits at 16 x 160 x 160 (and how far ours in bf16 is from them), then
times eager CPU inference (clips/s) in NCTHW and channels_last_3d, after warm-up: the reference model in
fp32, ours in each `--precision` (fp32, bf16 autocast; default both), and prints ours / reference in the
best layout of each (`common.py`).
"""
import argparse
import importlib
import sys

import timm
import torch

import zoo  # noqa: F401
from zoo.models.p3d import checkpoint_filter_fn

import common  # benchmarks/common.py

OFFICIAL = {'p3d63': ('P3D63', {}), 'p3d131': ('P3D131', {}), 'p3d199': ('P3D199', {}),
            'p3d199_flow': ('P3D199', {'modality': 'Flow'})}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='folder with the reference p3d_model.py')
    parser.add_argument('--models', nargs='+', default=['p3d63'])
    common.add_arguments(parser, batch_size=(1, 4), warmup=2, iters=5)
    args = parser.parse_args()
    common.setup(parser, args)
    sys.path.insert(0, args.official)
    reference = importlib.import_module('p3d_model')

    for name in args.models:
        fn, kwargs = OFFICIAL[name]
        torch.manual_seed(0)
        official = getattr(reference, fn)(num_classes=400, **kwargs).eval()
        ours = timm.create_model(name).eval()
        ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
        shape = tuple(ours.pretrained_cfg['input_size'])
        x = torch.randn(1, *shape)
        with torch.inference_mode():
            ref = official(x)
        common.report_errors(name, ours, (x,), ref, args.precision)
        results = common.compare(
            [common.Contender('official', official, official=True), common.Contender('ours', ours),
             common.fused_contender(ours, (x,), ref, args.precision)],
            lambda bs: (torch.randn(bs, *shape),), args, layouts=('ncthw', 'channels_last_3d'), unit='clips/s')
        results.print_ratios(name)


if __name__ == '__main__':
    main()
