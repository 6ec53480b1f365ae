"""Our EMOv2 vs the official zhangzjn/EMOv2 code, side by side, on the same weights.

The official code is not part of this project: point --official at a checkout of zhangzjn/EMOv2 (the
folder holding `model/lib_emo/emo2.py`), kept outside the repo; it needs `einops` installed.

    python benchmarks/emov2_vs_official.py --official /tmp/official/emov2 --models emov2_1m emov2_5m

Checks that both give the same logits on the same (random, perturbed) weights (and how far ours in bf16
is from them), then times eager CPU inference at each batch size, NCHW and channels_last, after warm-up:
the official code in fp32, ours in each `--precision` (fp32, bf16 autocast; default both), and prints
ours / official in the best layout of each (`common.py`).
"""
import argparse
import importlib
import sys
import types

import timm
import torch

import zoo  # noqa: F401
from zoo.models.emov2 import checkpoint_filter_fn

import common  # benchmarks/common.py

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


class Logits(torch.nn.Module):
    """The official model's logits (its forward returns `{'out': logits, 'out_kd': logits}`)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)['out']


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='EMOv2 checkout (outside this repo)')
    parser.add_argument('--models', nargs='+', default=['emov2_1m', 'emov2_2m', 'emov2_5m'])
    common.add_arguments(parser, batch_size=(1, 32), warmup=3, iters=10)
    args = parser.parse_args()
    common.setup(parser, args)
    emo2 = load_official(args.official)

    for name in args.models:
        official = getattr(emo2, OFFICIAL_BUILDERS[name])(num_classes=1000).eval()
        perturb(official)
        ours = timm.create_model(name).eval()
        ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
        size = ours.pretrained_cfg['input_size'][-1]
        x = torch.randn(2, 3, size, size)
        with torch.inference_mode():
            ref = official(x)['out']
        common.report_errors(name, ours, (x,), ref, args.precision)
        results = common.compare(
            [common.Contender('official', Logits(official), official=True), common.Contender('ours', ours),
             common.fused_contender(ours, (x,), ref, args.precision)],
            lambda bs: (torch.randn(bs, 3, size, size),), args, unit='img/s')
        results.print_ratios(name)


if __name__ == '__main__':
    main()
