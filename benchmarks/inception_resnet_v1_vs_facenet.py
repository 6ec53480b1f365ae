"""Our Inception-ResNet-v1 vs the official facenet-pytorch model, side by side, on the same weights.

The official code is not part of this project: point --official at a checkout of
timesler/facenet-pytorch (the folder holding `models/inception_resnet_v1.py`), kept outside the repo.

    python benchmarks/inception_resnet_v1_vs_facenet.py --official /tmp/facenet --batch-size 1 32

Checks first that both give the same logits on the same (random) weights, then times eager CPU
inference for each batch size in NCHW and channels_last, after warm-up.
"""
import argparse
import importlib
import sys
import types

import timm
import torch
from timm.utils import reparameterize_model

import zoo  # noqa: F401
from zoo.bench import _time_calls
from zoo.models.inception_resnet import checkpoint_filter_fn
from zoo.testing import relative_error


def load_official(path: str):
    sys.path.insert(0, path)
    sys.modules.setdefault('requests', types.ModuleType('requests'))  # only used for downloads
    adapters = types.ModuleType('requests.adapters')
    adapters.HTTPAdapter = object
    sys.modules.setdefault('requests.adapters', adapters)
    return importlib.import_module('models.inception_resnet_v1').InceptionResnetV1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='facenet-pytorch checkout (outside this repo)')
    parser.add_argument('--batch-size', nargs='+', type=int, default=[1, 32])
    parser.add_argument('--img-size', type=int, default=160)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    official = load_official(args.official)(classify=True, num_classes=8631).eval()
    ours = timm.create_model('inception_resnet_v1_facenet.vggface2').eval()
    ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
    x = torch.randn(2, 3, args.img_size, args.img_size)
    with torch.inference_mode():
        err = relative_error(ours(x), official(x))
    fused = reparameterize_model(ours)
    with torch.inference_mode():
        err_fused = relative_error(fused(x), official(x))
    print(f'outputs: max relative difference {err:.2e}, reparameterized {err_fused:.2e} (fixture tolerance 1e-4)')

    print(f'{"batch":>5}  {"layout":>13}  {"official img/s":>14}  {"ours img/s":>10}  {"fused img/s":>11}  '
          f'{"ours/official":>13}  {"fused/official":>14}')
    best = {}
    for bs in args.batch_size:
        x = torch.randn(bs, 3, args.img_size, args.img_size)
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            xin = x.contiguous(memory_format=fmt)
            speeds = []
            for model in (official, ours, fused):
                model = model.to(memory_format=fmt)

                def step():
                    with torch.inference_mode():
                        model(xin)
                _, mean = _time_calls(step, args.warmup, args.iters)
                speeds.append(bs / mean)
            layout = 'channels_last' if channels_last else 'nchw'
            print(f'{bs:>5}  {layout:>13}  {speeds[0]:>14.1f}  {speeds[1]:>10.1f}  {speeds[2]:>11.1f}  '
                  f'{speeds[1] / speeds[0]:>13.2f}  {speeds[2] / speeds[0]:>14.2f}')
            for who, s in zip(('official', 'ours', 'fused'), speeds):
                best[(who, bs)] = max(best.get((who, bs), 0.0), s)
    for bs in args.batch_size:
        print(f'batch {bs}, best layout of each: ours / official = {best[("ours", bs)] / best[("official", bs)]:.2f}, '
              f'reparameterized / official = {best[("fused", bs)] / best[("official", bs)]:.2f}')


if __name__ == '__main__':
    main()
