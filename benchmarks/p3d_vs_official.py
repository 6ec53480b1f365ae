"""Our P3D ResNet vs the reference qijiezhao/pseudo-3d-pytorch model, side by side, on the same weights.

The reference code is not part of this project: point --official at a folder holding its `p3d_model.py`,
kept outside the repo.

    python benchmarks/p3d_vs_official.py --official /tmp/p3d_official --models p3d63 --batch-size 1 4

Checks that both give the same logits at 16 x 160 x 160, then times eager CPU inference (clips/s) in
NCTHW and channels_last_3d, after warm-up.
"""
import argparse
import importlib
import sys

import timm
import torch

import zoo  # noqa: F401
from zoo.bench import _time_calls, to_channels_last
from zoo.models.p3d import checkpoint_filter_fn
from zoo.testing import relative_error

OFFICIAL = {'p3d63': ('P3D63', {}), 'p3d131': ('P3D131', {}), 'p3d199': ('P3D199', {}),
            'p3d199_flow': ('P3D199', {'modality': 'Flow'})}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='folder with the reference p3d_model.py')
    parser.add_argument('--models', nargs='+', default=['p3d63'])
    parser.add_argument('--batch-size', nargs='+', type=int, default=[1, 4])
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
            print(f'{name}: max relative difference of logits {relative_error(ours(x), official(x)):.2e}')
        print(f'{"batch":>5}  {"layout":>16}  {"official clips/s":>16}  {"ours clips/s":>12}  {"ours/official":>13}')
        for bs in args.batch_size:
            x = torch.randn(bs, *shape)
            for channels_last in (False, True):
                xin = x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x
                speeds = []
                for model in (official, ours):
                    model = to_channels_last(model) if channels_last else model

                    def step():
                        with torch.inference_mode():
                            model(xin)
                    speeds.append(bs / _time_calls(step, args.warmup, args.iters)[1])
                layout = 'channels_last_3d' if channels_last else 'ncthw'
                print(f'{bs:>5}  {layout:>16}  {speeds[0]:>16.2f}  {speeds[1]:>12.2f}  {speeds[1] / speeds[0]:>13.2f}')


if __name__ == '__main__':
    main()
