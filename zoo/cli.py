"""The `zoo` command: list, info, bench, weights, sample; heads add verbs through the `zoo.commands` entry points.

An entry point in the `zoo.commands` group names a function `register(subparsers)` that adds its verbs.
Each is loaded only when the parser is built and a failing import (a missing optional extra) costs
that verb only.

Every verb runs inside one error boundary (`run_verb`): the errors a user can fix (`zoo.ZooError`:
missing or wrong weights, malformed input files, bad values; a path that does not exist) print one
line naming the file, field or value and the fix, and the command exits with status 2. `--debug` (or
`ZOO_DEBUG=1`) shows the traceback instead. Any other exception is a bug and keeps its traceback.
"""
import argparse
import json
import os
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import List, Optional

import torch


def _cmd_list(args) -> int:
    import zoo
    from zoo.hub import describe_source
    from zoo.models import create_model, get_pretrained_cfg, list_pretrained

    rows = [('model', 'family', 'params (M)', 'input', 'weights')]
    for name in zoo.catalogue(args.patterns):
        with torch.device('meta'):
            model = create_model(name)
        n_params = sum(p.numel() for p in model.parameters())
        tags = [t for t in list_pretrained(name + '.*') if describe_source(get_pretrained_cfg(t))[0]]
        default = getattr(get_pretrained_cfg(name), 'tag', None)  # what a bare name loads with pretrained=True
        weights = ', '.join(t.split('.', 1)[1] + (' (default)' if len(tags) > 1 and t.split('.', 1)[1] == default
                                                  else '') for t in tags) or 'no published weights'
        size = 'x'.join(str(s) for s in model.pretrained_cfg['input_size'])
        origin = zoo.family_of(name) or '-'
        if zoo.is_timm_member(name):
            origin += ' (timm)'
        rows.append((name, origin, f'{n_params / 1e6:.2f}', size, weights))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print('  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print('  '.join('-' * w for w in widths))
    return 0


def _cmd_info(args) -> int:
    import zoo
    from zoo.hub import MANIFEST, describe_source, load_manifest
    from zoo.models import create_model, get_pretrained_cfg, is_model, list_pretrained, model_entrypoint

    name = args.model
    base = name.split('.')[0]
    if not is_model(base):
        from zoo.models import unknown_model_error
        raise unknown_model_error(name)
    with torch.device('meta'):
        model = create_model(name)
    doc = (model_entrypoint(base).__doc__ or '').strip().splitlines()
    manifest = load_manifest() if MANIFEST.is_file() else {}
    family = zoo.family_of(name)
    info = {
        'model': name,
        'family': family,
        'implemented_by': 'zoo' if family and not zoo.is_timm_member(name) else 'timm',
        'summary': doc[0] if doc else '',
        'params': sum(p.numel() for p in model.parameters()),
        'num_features': getattr(model, 'num_features', None),
        'feature_info': [dict(i) for i in getattr(model, 'feature_info', [])],
        'pretrained_cfg': {k: v for k, v in model.pretrained_cfg.items() if v is not None},
        'default_tag': getattr(get_pretrained_cfg(base), 'tag', None),  # what `base` alone loads
        'tags': {},
    }
    for tag in list_pretrained(base + '.*'):
        kind, loc = describe_source(get_pretrained_cfg(tag))
        info['tags'][tag] = dict(source=kind or None, location=loc or None, manifest=manifest.get(tag))
    print(json.dumps(info, indent=1, default=str))
    return 0


def _cmd_bench(args) -> int:
    import zoo
    from zoo import bench
    from zoo.errors import InputError

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.allocator == 'keep':
        bench.keep_freed_memory()
    if args.all:
        names = zoo.catalogue()
    elif args.models:
        names = zoo.catalogue(args.models)
        if not names:
            unknown = [m for m in args.models if not any(c in m for c in '*?[')]
            from zoo.models import unknown_model_error
            raise unknown_model_error(unknown[0]) if unknown else InputError(
                f'no model matches {args.models}; `zoo list` shows the catalogue.')
    else:
        names = bench.representatives()
    for path in (args.csv, args.json, args.plot):  # refuse an unwritable output before the hours of timing
        if path and not Path(path).resolve().parent.is_dir():
            raise InputError(f'cannot write {path}: folder {Path(path).parent} does not exist')
    results = bench.run(
        names, batch_sizes=args.batch_size, channels_last=args.channels_last, train=args.train,
        compile=args.compile, warmup=args.warmup, iters=args.iters, img_size=args.img_size,
        speed=not args.no_speed, progress=not args.quiet, fuse=args.fuse, max_seconds=args.max_seconds,
        include_large=args.include_large, precision=args.precision, weights_dtype=args.weights_dtype)
    print(bench.format_table(results))
    if args.csv:
        bench.write_csv(results, args.csv)
    if args.json:
        bench.write_json(results, args.json)
    if args.plot and not args.no_speed:
        bench.plot_pareto(results, args.plot)
    return 0


def _cmd_weights_convert(args) -> int:
    from zoo.weights import convert
    if args.trust_pickle:
        print(f'warning: --trust-pickle: unpickling {args.checkpoint} runs the code it carries', file=sys.stderr)
    from zoo.hub import MANIFEST, load_manifest
    manifest = None if args.no_manifest or not MANIFEST.is_file() else MANIFEST
    digest = convert(args.model, Path(args.checkpoint), Path(args.out), trust_pickle=args.trust_pickle,
                     code_path=args.code_path, manifest=manifest)
    print(f'wrote {args.out}/model.safetensors, config.json, README.md')
    print(f'sha256 {digest}  model.safetensors')
    entry = load_manifest(manifest).get(args.model, {}) if manifest else {}
    if entry.get('converted_sha256') == digest:
        print(f"recorded in {manifest}: {args.model} sha256 {entry['sha256']} (official file), "
              f"converted_sha256 {digest}; meant for hf-hub:{entry.get('hub_repo')}")
    return 0


def _cmd_weights_push(args) -> int:
    from zoo.weights import push
    files = push(Path(args.folder), args.repo, dry_run=args.dry_run, private=args.private)
    verb = 'would upload' if args.dry_run else 'uploaded'
    print(f'{verb} {", ".join(files)} to https://huggingface.co/{args.repo}')
    return 0


def _cmd_sample(args) -> int:
    import timm
    from zoo import diffusion
    from zoo.errors import InputError, WeightsError

    if args.threads:
        torch.set_num_threads(args.threads)
    overlay = dict(file=args.checkpoint) if args.checkpoint else None
    try:
        model = timm.create_model(args.model, pretrained=bool(args.checkpoint), pretrained_cfg_overlay=overlay)
    except WeightsError as e:  # the fix in this command's flags
        raise e.with_fix('Give a converted or official checkpoint with --checkpoint FILE, or leave it out to '
                         'sample a randomly initialised model.') from e.__cause__
    if not hasattr(model, 'sigma_data'):
        raise InputError(f"'{args.model}' is not a diffusion denoiser; `zoo sample` runs EDM denoisers (lego_*).")
    if not args.checkpoint:
        print('warning: no --checkpoint: sampling a randomly initialised model', file=sys.stderr)
    model = model.to(args.device).eval()
    schedule = None
    if args.skip_bricks:
        schedule = diffusion.BrickSchedule.skip_top(model.num_bricks, args.skip_ratio, args.skip_bricks)
    seeds = list(range(args.seed, args.seed + args.num))
    try:
        samples = diffusion.generate(
            model, seeds, class_idx=args.class_idx, img_size=args.img_size, device=args.device, num_steps=args.steps,
            cfg_scale=args.cfg_scale, schedule=schedule, precision=args.precision)
    except ValueError as e:  # a size the model cannot take (diffusion's own checks raise InputError already)
        if isinstance(e, InputError):
            raise
        raise InputError(str(e)) from e
    if samples.shape[1] == 4:  # SD-VAE latents x 0.18215
        if args.vae:
            try:
                from diffusers.models import AutoencoderKL
            except ImportError:
                raise InputError('--vae needs diffusers (pip install diffusers)') from None
            vae = AutoencoderKL.from_pretrained(args.vae).to(args.device)
            with torch.no_grad():
                samples = vae.decode((samples / 0.18215).float()).sample
        else:
            print('note: latent model without --vae: the grid shows latent channels 0-2 (halved), not images',
                  file=sys.stderr)
            samples = (samples[:, :3] / 2).clamp(-1, 1)
    diffusion.save_grid(samples.float(), args.out)
    print(f'wrote {args.out}: {len(seeds)} samples, seeds {seeds[0]}-{seeds[-1]}, {args.steps} steps')
    return 0


def _bounded(kind, low, high=None, what=''):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not {what}') from None
        if value < low or (high is not None and value > high) or value != value:
            bounds = f'between {low} and {high}' if high is not None else f'at least {low}'
            raise argparse.ArgumentTypeError(f'must be {bounds}, got {text}')
        return value
    parse.__name__ = what.split()[-1]  # argparse names the type in its messages
    return parse


# argparse types that refuse a bad value when the command line is read, before any work is done
positive_int = _bounded(int, 1, what='an integer')
non_negative_int = _bounded(int, 0, what='an integer')
positive_float = _bounded(float, 1e-30, what='a number')
fraction = _bounded(float, 0.0, 1.0, what='a number')


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--debug', action='store_true',
                        help='show the full traceback of an error (also: ZOO_DEBUG=1)')


def _show_notes() -> None:
    """The project's INFO messages (which default weights a bare name loads, annotations a dataset skips)
    as `note:` lines on stderr: a CLI user sees them, a library user's logging setup decides."""
    import logging
    for name in ('zoo', 'detection', 'segmentation'):
        logger = logging.getLogger(name)
        if not any(getattr(h, '_zoo_notes', False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter('note: %(message)s'))
            handler._zoo_notes = True
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)


def run_verb(args: argparse.Namespace) -> int:
    """Run the verb `args.func(args)` inside the CLI's error boundary (see the module docstring)."""
    from zoo.errors import describe_user_error, is_user_error

    debug = getattr(args, 'debug', False) or os.environ.get('ZOO_DEBUG', '').strip() not in ('', '0')
    _show_notes()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except Exception as e:
        if debug or not is_user_error(e):
            raise
        print(f'error: {describe_user_error(e)}', file=sys.stderr)
        return 2


def _timm_version() -> str:
    import timm
    return timm.__version__


def build_parser() -> argparse.ArgumentParser:
    from zoo.bench import LARGE_PARAMS
    from zoo.precision import PRECISIONS

    import zoo

    parser = argparse.ArgumentParser(prog='zoo', description='Vision model zoo for timm.')
    parser.add_argument('--version', action='version',
                        version=f'zoo {zoo.__version__} (torch {torch.__version__}, timm {_timm_version()})')
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('list', help='the catalogue: models, families, params, published weights')
    p.add_argument('patterns', nargs='*', default=['*'], help='glob patterns (default: all)')
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser('info', help='everything about one model: cfg, features, weight sources')
    p.add_argument('model', help='a model name, with or without its tag (e.g. emov2_1m.in1k)')
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser('bench', help='params, GMACs, activations, latency and throughput')
    which = p.add_mutually_exclusive_group()
    which.add_argument('--models', nargs='+', default=None,
                       help='glob patterns over the catalogue (default: one model per family, see --all)')
    which.add_argument('--all', action='store_true', help='the whole catalogue (large models: see --include-large)')
    p.add_argument('--include-large', action='store_true',
                   help=f'also time models over {LARGE_PARAMS // 10**6}M params (default: params and GMACs only, counted on the '
                        'meta device)')
    p.add_argument('--precision', choices=('fp32', 'bf16'), default='fp32',
                   help='fp32 (default), or bf16 autocast (the CPU\'s AMX / AVX-512 bf16 units, CUDA\'s tensor cores)')
    p.add_argument('--weights-dtype', choices=('fp32', 'bf16'), default='fp32',
                   help='dtype of the weights (default fp32; autocast keeps fp32 weights)')
    p.add_argument('--max-seconds', type=positive_float, default=None,
                   help='bound each timed run: warm-up stops after half of it, timing after all of it (one call '
                        'of each at least; default: no bound)')
    p.add_argument('--batch-size', nargs='+', type=positive_int, default=[1], help='batch sizes to time (default 1)')
    p.add_argument('--channels-last', action='store_true', help='time channels_last besides NCHW')
    p.add_argument('--train', action='store_true', help='time forward + backward instead of inference')
    p.add_argument('--compile', action='store_true', help='torch.compile the model before timing')
    p.add_argument('--fuse', action='store_true',
                   help='time inference after timm.utils.reparameterize_model: folded norms, merged branches, '
                        'activations and residual sums fused into oneDNN convolutions (zoo.layers)')
    p.add_argument('--warmup', type=non_negative_int, default=3, help='untimed calls first (default 3)')
    p.add_argument('--iters', type=positive_int, default=10, help='timed calls (default 10)')
    p.add_argument('--img-size', type=positive_int, default=None, help='override the default input side')
    p.add_argument('--threads', type=positive_int, default=None, help='torch.set_num_threads')
    p.add_argument('--allocator', choices=('keep', 'default'), default='keep',
                   help='keep (default): malloc keeps freed memory for reuse instead of faulting in fresh pages for '
                        'every activation (zoo.bench.keep_freed_memory); default: as the process started')
    p.add_argument('--no-speed', action='store_true', help='params, GMACs and activations only')
    p.add_argument('--csv', help='write the rows as CSV'), p.add_argument('--json', help='write the rows as JSON')
    p.add_argument('--plot', help='Pareto chart of GMACs vs throughput (PNG)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser('weights', help='convert official checkpoints and publish them')
    wsub = p.add_subparsers(dest='weights_command', required=True)
    c = wsub.add_parser('convert', help="write timm's Hub layout (safetensors, config, card)")
    c.add_argument('model', help='model.tag, e.g. inception_resnet_v1_facenet.vggface2')
    c.add_argument('--checkpoint', required=True, help='the official checkpoint file')
    c.add_argument('--out', required=True, help='output folder')
    c.add_argument('--trust-pickle', action='store_true',
                   help='unpickle a checkpoint that carries code (e.g. LEGO/EDM .pkl): RUNS THAT CODE; '
                        'trusted files only')
    c.add_argument('--code-path', action='append', default=[], metavar='DIR',
                   help='folder with the modules such a pickle imports (e.g. the official repo), for that load only')
    c.add_argument('--no-manifest', action='store_true',
                   help="don't record the sha256 of the official file and of the converted file in weights/manifest.json")
    c.set_defaults(func=_cmd_weights_convert)
    u = wsub.add_parser('push', help='upload a converted folder to the Hugging Face Hub')
    u.add_argument('folder', help='a folder `zoo weights convert` wrote')
    u.add_argument('--repo', required=True, help='ORG/NAME')
    u.add_argument('--dry-run', action='store_true', help='check the folder and print what would be uploaded')
    u.add_argument('--private', action='store_true', help='create the Hub repo private')
    u.set_defaults(func=_cmd_weights_push)

    p = sub.add_parser('sample', help='sample an image grid from a diffusion denoiser (EDM Heun, guidance, skipping)')
    p.add_argument('model', help='e.g. lego_s_pg_64')
    p.add_argument('--checkpoint', help='weights file (converted safetensors); none: random init')
    p.add_argument('--steps', type=positive_int, default=18, help='Heun steps (default 18)')
    p.add_argument('--class', dest='class_idx', type=int, default=None,
                   help='class index (default: a random class per seed)')
    p.add_argument('--num', type=positive_int, default=16, help='samples (default 16)')
    p.add_argument('--seed', type=int, default=0, help='first seed; sample k uses seed + k')
    p.add_argument('--cfg-scale', type=float, default=None, help='classifier-free guidance scale (default off)')
    p.add_argument('--skip-bricks', type=non_negative_int, default=0, help='drop this many top bricks in the late steps')
    p.add_argument('--skip-ratio', type=fraction, default=0.6, help='steps after this fraction skip (default 0.6)')
    p.add_argument('--img-size', type=positive_int, default=None, help='sample side (default: the model\'s)')
    p.add_argument('--vae', help='diffusers AutoencoderKL (id or folder) to decode latent models')
    p.add_argument('--device', default='cpu', help="where to sample: 'cpu' (default), 'cuda', ...")
    p.add_argument('--precision', choices=tuple(PRECISIONS), default='fp32',
                   help="fp32 (default), or bf16: the denoiser under bfloat16 autocast (the CPU's AMX / AVX-512 bf16 "
                        "units, CUDA's tensor cores); the sampler's state stays float64")
    p.add_argument('--threads', type=positive_int, default=None, help='torch.set_num_threads')
    p.add_argument('--out', required=True, help='PNG grid to write')
    p.set_defaults(func=_cmd_sample)

    for ep in entry_points(group='zoo.commands'):
        try:
            ep.load()(sub)
        except ImportError as e:  # an optional extra is missing: only its verbs go
            if ep.name not in sub.choices:  # (the entry point may have added its verb before failing)
                sub.add_parser(ep.name, help=f'unavailable: {e}')
            sub.choices[ep.name].set_defaults(func=lambda args, e=e, name=ep.name: _unavailable(name, e))
    return parser


def _unavailable(name: str, error: Exception) -> int:
    from zoo.errors import InputError
    raise InputError(f"`zoo {name}` needs an optional extra that is not installed ({error}).")


def main(argv: Optional[List[str]] = None) -> int:
    warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
    return run_verb(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
