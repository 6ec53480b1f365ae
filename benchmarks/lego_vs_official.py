"""Our LEGO denoiser vs the official JegZheng/LEGODiffusion code on the same weights, and what skipping saves.

The official code is not part of this project: point --official at an extracted copy of the repository
(the folder holding `training/`, `torch_utils/`, `dnnlib/`), kept outside this repo. Its `dnnlib` imports
`requests`; a stand-in module is used when that is not installed (nothing here downloads).

    python benchmarks/lego_vs_official.py --official /tmp/official/lego --models lego_s_pg_64 --iters 10

For each model: the max relative difference of the denoiser output D (plain, guided with scale 4, and
with the top bricks skipped, against the official `return_stage_idx`) on deterministic stand-in weights
in the official naming, and how far ours in bf16 is from the plain one; official (fp32) vs our denoiser
calls/s in each `--precision` (fp32, bf16 autocast; default both) at each batch size (eager CPU inference
after warm-up, median call, `common.py`); our calls/s and fvcore GMACs with the top `--skip` bricks
skipped (default half of the bricks, rounded down); and a whole EDM Heun run with `BrickSchedule.skip_top`
from half the steps on, in each precision.
"""
import argparse
import statistics
import sys
import types

import timm
import torch

import zoo  # noqa: F401
from zoo import bench, diffusion
from zoo.bench import _time_calls
from zoo.models.lego import checkpoint_filter_fn
from zoo.precision import autocast
from zoo.testing import manifest_state_dict, relative_error

import common  # benchmarks/common.py

OFFICIAL_NAMES = {
    'lego_s_pg_64': 'lego_S_PG_64', 'lego_s_pr_64': 'lego_S_PR_64', 'lego_s_u_32': 'lego_S_U_32',
    'lego_s_u_64': 'lego_S_U_64', 'lego_l_pg_32': 'lego_L_PG_32', 'lego_l_pr_32': 'lego_L_PR_32',
    'lego_l_pg_64': 'lego_L_PG_64', 'lego_l_pr_64': 'lego_L_PR_64', 'lego_l_pg_64_old': 'lego_L_PG_64_old',
    'lego_l_pr_64_old': 'lego_L_PR_64_old', 'lego_l_u_32': 'lego_L_U_32', 'lego_l_u_64': 'lego_L_U_64',
    'lego_xl_pg_32': 'lego_XL_PG_32', 'lego_xl_pr_32': 'lego_XL_PR_32', 'lego_xl_pg_64': 'lego_XL_PG_64',
    'lego_xl_pr_64': 'lego_XL_PR_64', 'lego_xl_u_32': 'lego_XL_U_32', 'lego_xl_u_64': 'lego_XL_U_64',
}


def load_official(path: str):
    sys.path.insert(0, path)
    try:
        import requests  # noqa: F401
    except ImportError:
        sys.modules['requests'] = types.ModuleType('requests')  # dnnlib.util imports it for downloads only
    from training.networks import EDMPrecondLEGO
    return EDMPrecondLEGO


class _Bricks(torch.nn.Module):
    def __init__(self, model, bricks):
        super().__init__()
        self.model, self.bricks = model, bricks

    def forward(self, x, sigma, labels):
        return self.model(x, sigma, labels, bricks=self.bricks)


def calls_per_s(fn, warmup, iters):
    """Calls of `fn` per second, from the median call."""
    def step():
        with torch.inference_mode():
            fn()
    return 1.0 / statistics.median(_time_calls(step, warmup, iters))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='extracted LEGODiffusion repository (outside this repo)')
    parser.add_argument('--models', nargs='+', default=['lego_s_pg_64'])
    parser.add_argument('--skip', type=int, default=None, help='top bricks to skip (default: half, rounded down)')
    parser.add_argument('--steps', type=int, default=8, help='Heun steps of the sampler comparison')
    parser.add_argument('--device', default='cpu')
    common.add_arguments(parser, batch_size=(1, 8), warmup=2, iters=10)
    args = parser.parse_args()
    common.setup(parser, args)
    EDMPrecondLEGO = load_official(args.official)
    device = torch.device(args.device)

    for name in args.models:
        ours = timm.create_model(name).eval()
        chans, size = ours.in_chans, ours.img_size
        official = EDMPrecondLEGO(img_resolution=size, img_channels=chans, label_dim=ours.num_classes,
                                  model_type=OFFICIAL_NAMES[name], train_intermediate_stages=True).eval()
        weights = manifest_state_dict(name)
        official.load_state_dict(weights)
        ours.load_state_dict(checkpoint_filter_fn(weights, ours))
        official, ours = official.to(device), ours.to(device)
        n = ours.num_bricks
        skip = args.skip if args.skip is not None else max(1, n // 2)
        kept = list(range(n - skip))

        g = torch.Generator().manual_seed(0)
        x = (0.5 * torch.randn(2, chans, size, size, generator=g) + torch.randn(2, chans, size, size, generator=g)).to(device)
        sigma = torch.tensor([0.5, 5.0], device=device)
        labels = torch.zeros(2, ours.num_classes, device=device)
        labels[0, 7] = 1
        with torch.inference_mode():
            ref = official(x, sigma, labels)
            err = relative_error(ours(x, sigma, labels), ref)
            err_cfg = relative_error(diffusion.guided_denoise(ours, x, sigma, labels, 4.0),
                                     official(x, sigma, labels, 4.0, use_full_channels=True))
            err_skip = relative_error(ours(x, sigma, labels, bricks=kept),
                                      official(x, sigma, labels, return_stage_idx=kept[-1]))
        print(f'{name}: max relative difference of D: {err:.2e} plain, {err_cfg:.2e} guided (scale 4), '
              f'{err_skip:.2e} with bricks {kept} (fixture tolerance 2e-5)')
        errors = common.precision_errors(ours, (x, sigma, labels), ref, args.precision)
        if errors:
            print(f'{name}: ours vs the official fp32 D (plain): {common.format_errors(errors)}')

        inputs = bench.example_inputs(ours, 1)
        inputs = tuple(t.to(device) for t in inputs)
        gmacs = bench.count_macs(ours, inputs)[0]
        gmacs_skip = bench.count_macs(_Bricks(ours, kept), inputs)[0]
        print(f'  GMACs per sample: {gmacs:.2f} all bricks, {gmacs_skip:.2f} with bricks {kept} '
              f'({1 - gmacs_skip / gmacs:.0%} less)')
        skipped = f'ours skip{skip}'
        results = common.compare(
            [common.Contender('official', official, official=True), common.Contender('ours', ours),
             common.fused_contender(ours, (x, sigma, labels), ref, args.precision),
             common.Contender(skipped, _Bricks(ours, kept))],
            lambda bs: tuple(t.to(device) for t in ours.example_inputs(bs)), args, layouts=('nchw',),
            per_call=True)
        results.print_ratios(name)
        for bs in args.batch_size:
            print(f'batch {bs}, skipping the top {skip} bricks: skip / full = ' + ', '.join(
                f'{results.best(f"{skipped} {p}", bs)[0] / results.best(f"ours {p}", bs)[0]:.2f} ({p})'
                for p in args.precision))

        schedule = diffusion.BrickSchedule.skip_top(n, start=0.5, num_skip=skip)
        seeds = list(range(args.batch_size[0]))
        for precision in args.precision:
            run = {}
            for label, sched in (('all bricks', None),
                                 (f'skip {skip} from step {int(args.steps * 0.5) + 1}', schedule)):
                def sample(sched=sched):
                    with autocast(precision, ours):
                        diffusion.generate(ours, seeds, class_idx=7, num_steps=args.steps, cfg_scale=1.5,
                                           schedule=sched, device=device)
                run[label] = calls_per_s(sample, min(args.warmup, 1), max(1, args.iters // 5))
            (l0, s0), (l1, s1) = run.items()
            print(f'  sampler, {args.steps} Heun steps, guidance 1.5, batch {len(seeds)}, ours {precision}: '
                  f'{l0} {1 / s0:.2f} s, {l1} {1 / s1:.2f} s (skip / full time {s0 / s1:.2f})')


if __name__ == '__main__':
    main()
