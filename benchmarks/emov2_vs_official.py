"""Our EMOv2 vs the official zhangzjn/EMOv2 code, side by side, on the same weights.

The official code is not part of this project: point --official at a checkout of zhangzjn/EMOv2 (the
folder holding `model/lib_emo/emo2.py`), kept outside the repo; it needs `einops` installed.

    python benchmarks/emov2_vs_official.py --official /tmp/emov2_official --models emov2_1m emov2_5m

Checks that both give the same logits on the same (random, perturbed) weights, then times eager CPU
inference at each batch size, NCHW and channels_last, after warm-up.
"""
import argparse
import importlib
import sys
import types

import timm
import torch

import zoo  # noqa: F401
from zoo.bench import _time_calls
from zoo.models.emov2 import checkpoint_filter_fn
from zoo.testing import relative_error

OFFICIAL_BUILDERS = {
    'emov2_1m': 'EMO2_1M_k5_hybrid', 'emov2_2m': 'EMO2_2M_k5_hybrid', 'emov2_5m': 'EMO2_5M_k5_hybrid',
    'emov2_5m_512': 'EMO2_5M_k5_hybrid_512', 'emov2_20m': 'EMO2_20M_k5_hybrid',
}


def load_official(path: str):
    """The official module, without its training registry and unused OpenCV import."""
    package = types.ModuleType('model')
    package.__path__ = [f'{path}/model']
    package.MODEL = types.SimpleNamespace(register_module=lambda fn: fn)
    sys.modules['model'] = package
    sys.modules.setdefault('cv2', types.ModuleType('cv2'))
    return importlib.import_module('model.lib_emo.emo2')


def perturb(model: torch.nn.Module):
    """Non-trivial weights: layer scales and norms away from their init, so every branch matters."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.5 if p.dim() <= 1 else 0.02))
            if name.endswith('gamma'):
                p.fill_(0.5)
        for name, b in model.named_buffers():
            if name.endswith('running_var'):
                b.uniform_(0.5, 1.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='EMOv2 checkout (outside this repo)')
    parser.add_argument('--models', nargs='+', default=['emov2_1m', 'emov2_2m', 'emov2_5m'])
    parser.add_argument('--batch-size', nargs='+', type=int, default=[1, 32])
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    emo2 = load_official(args.official)

    for name in args.models:
        official = getattr(emo2, OFFICIAL_BUILDERS[name])(num_classes=1000).eval()
        perturb(official)
        ours = timm.create_model(name).eval()
        ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
        size = ours.pretrained_cfg['input_size'][-1]
        x = torch.randn(2, 3, size, size)
        with torch.inference_mode():
            err = relative_error(ours(x), official(x)['out'])
        print(f'{name}: max relative difference of logits {err:.2e} (fixture tolerance 1e-4)')
        print(f'{"batch":>5}  {"layout":>13}  {"official img/s":>14}  {"ours img/s":>10}  {"ours/official":>13}')
        best = {}
        for bs in args.batch_size:
            x = torch.randn(bs, 3, size, size)
            for channels_last in (False, True):
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                xin = x.contiguous(memory_format=fmt)
                speeds = []
                for model in (official, ours):
                    model = model.to(memory_format=fmt)

                    def step():
                        with torch.inference_mode():
                            model(xin)
                    speeds.append(bs / _time_calls(step, args.warmup, args.iters)[1])
                layout = 'channels_last' if channels_last else 'nchw'
                print(f'{bs:>5}  {layout:>13}  {speeds[0]:>14.1f}  {speeds[1]:>10.1f}  {speeds[1] / speeds[0]:>13.2f}')
                for who, s in zip(('official', 'ours'), speeds):
                    best[(who, bs)] = max(best.get((who, bs), 0.0), s)
        for bs in args.batch_size:
            print(f'{name} batch {bs}, best layout of each: ours / official = '
                  f'{best[("ours", bs)] / best[("official", bs)]:.2f}')


if __name__ == '__main__':
    main()
