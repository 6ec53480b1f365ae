"""Params, GMACs, activations, latency and throughput of zoo (and timm) models.

GMACs are multiply-accumulates (what most papers call "FLOPs"), counted by fvcore at batch 1 on the
model's default input, as the specs' figures are: convolutions, matmuls and linears, plus norms and
pooling by fvcore's rules; elementwise ops are not counted. Activations are fvcore's count of
convolution / linear outputs.

Timing runs in `torch.inference_mode` (or forward + backward with `train=True`) after warm-up calls,
because the first calls of a shape are several times slower; the latency is the median call, the
throughput is samples per second over all timed calls.
"""
import csv
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import timm
import torch

__all__ = ['BenchResult', 'example_inputs', 'to_channels_last', 'count_params', 'count_macs', 'bench_model', 'run', 'format_table',
           'write_csv', 'write_json', 'plot_pareto']


@dataclass
class BenchResult:
    model: str
    family: str
    params_m: float
    gmacs: float
    acts_m: float
    input: str
    mode: str = 'infer'
    layout: str = 'nchw'
    batch: int = 1
    compiled: bool = False
    fused: bool = False
    latency_ms: float = float('nan')
    throughput: float = float('nan')
    params: int = 0
    notes: List[str] = field(default_factory=list)


def example_inputs(model: torch.nn.Module, batch_size: int = 1, img_size: Optional[int] = None) -> Tuple:
    """Inputs for `model` from its cfg: B x input_size (images, or C x T x H x W clips), or the model's own
    `example_inputs(batch_size)` where the input is not a single tensor (e.g. a denoiser's x, sigma)."""
    if hasattr(model, 'example_inputs'):
        return tuple(model.example_inputs(batch_size))
    size = list(model.pretrained_cfg['input_size'])
    if img_size:
        size[-2:] = [img_size, img_size]
    return (torch.randn(batch_size, *size),)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _sdpa_macs(inputs, outputs) -> int:
    """fvcore handle for scaled_dot_product_attention: q @ k^T and attn @ v, as the explicit matmuls count."""
    from fvcore.nn.jit_handles import get_shape
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def count_macs(model: torch.nn.Module, inputs: Tuple) -> Tuple[float, float]:
    """(GMACs, activations in millions) for one call, by fvcore (fused attention counted as its matmuls)."""
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis
    model = model.eval()
    with torch.no_grad():
        flops = FlopCountAnalysis(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops.set_op_handle('aten::scaled_dot_product_attention', _sdpa_macs)
        acts = ActivationCountAnalysis(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return flops.total() / 1e9, acts.total() / 1e6


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """channels_last for 4-D weights and channels_last_3d for 5-D ones (a video model may hold both)."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() in fmt:
                p.data = p.data.contiguous(memory_format=fmt[p.dim()])
    return model


def _to_layout(inputs: Tuple, channels_last: bool) -> Tuple:
    if not channels_last:
        return inputs
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}
    return tuple(x.contiguous(memory_format=fmt[x.dim()]) if torch.is_tensor(x) and x.dim() in fmt else x
                 for x in inputs)


def _time_calls(step, warmup: int, iters: int) -> Tuple[float, float]:
    """(median seconds per call, mean seconds per call) after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), sum(times) / len(times)


def bench_model(
        model: torch.nn.Module,
        batch_size: int,
        channels_last: bool = False,
        train: bool = False,
        compile: bool = False,
        warmup: int = 3,
        iters: int = 10,
        img_size: Optional[int] = None,
) -> Tuple[float, float]:
    """(latency ms, samples/s) of `model` at `batch_size`."""
    inputs = _to_layout(example_inputs(model, batch_size, img_size), channels_last)
    if channels_last:
        model = to_channels_last(model)
    fn = torch.compile(model) if compile else model
    if train:
        model.train()

        def step():
            out = fn(*inputs)
            out = out[0] if isinstance(out, (tuple, list)) else out
            out.float().mean().backward()
            model.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                fn(*inputs)
    median, mean = _time_calls(step, warmup, iters)
    return median * 1e3, batch_size / mean


def run(
        names: Sequence[str],
        batch_sizes: Sequence[int] = (1,),
        channels_last: bool = False,
        train: bool = False,
        compile: bool = False,
        warmup: int = 3,
        iters: int = 10,
        img_size: Optional[int] = None,
        speed: bool = True,
        progress: bool = True,
        fuse: bool = False,
) -> List[BenchResult]:
    """Measure every model in `names`: one row per model x layout x batch size.

    `fuse` times the model after `timm.utils.reparameterize_model` (BatchNorm folding, merged branches)
    for inference; params and GMACs are always those of the model as defined.
    """
    from tqdm.auto import tqdm
    from zoo.models import family_of

    layouts = [False, True] if channels_last else [False]
    results = []
    bar = tqdm(total=len(names) * (len(batch_sizes) * len(layouts) if speed else 1), disable=not progress,
               desc='bench', unit='run')
    for name in names:
        bar.set_postfix_str(name)
        torch.manual_seed(0)
        model = timm.create_model(name).eval()
        inputs = example_inputs(model, 1, img_size)
        gmacs, acts = count_macs(model, inputs)
        n_params = count_params(model)
        base = dict(model=name, family=family_of(name) or 'timm', params=n_params, params_m=n_params / 1e6,
                    gmacs=gmacs, acts_m=acts, input='x'.join(str(s) for s in inputs[0].shape[1:]))
        if not speed:
            results.append(BenchResult(**base))
            bar.update()
            continue
        if fuse and not train:
            from timm.utils import reparameterize_model
            model = reparameterize_model(model, inplace=True)
        for cl in layouts:
            for bs in batch_sizes:
                latency, throughput = bench_model(
                    model, bs, channels_last=cl, train=train, compile=compile, warmup=warmup, iters=iters,
                    img_size=img_size)
                results.append(BenchResult(
                    **base, mode='train' if train else 'infer', layout='channels_last' if cl else 'nchw',
                    batch=bs, compiled=compile, fused=fuse and not train, latency_ms=latency, throughput=throughput))
                bar.update()
            model = model.to(memory_format=torch.contiguous_format)
    bar.close()
    return results


_COLUMNS = (
    ('model', 'model', '{}'), ('params_m', 'params (M)', '{:.2f}'), ('gmacs', 'GMACs', '{:.3f}'),
    ('acts_m', 'acts (M)', '{:.2f}'), ('input', 'input', '{}'), ('mode', 'mode', '{}'), ('layout', 'layout', '{}'),
    ('fused', 'fused', '{}'), ('batch', 'batch', '{}'), ('latency_ms', 'latency (ms)', '{:.1f}'), ('throughput', 'samples/s', '{:.1f}'),
)


def format_table(results: Iterable[BenchResult]) -> str:
    header = [title for _, title, _ in _COLUMNS]
    rows = [[('-' if isinstance(getattr(r, key), float) and math.isnan(getattr(r, key))
              else fmt.format(getattr(r, key))) for key, _, fmt in _COLUMNS] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = [
        'GMACs = multiply-accumulates per sample (the papers\' "FLOPs"), fvcore, batch 1, default input',
        '  '.join(h.ljust(w) for h, w in zip(header, widths)),
        '  '.join('-' * w for w in widths),
    ]
    lines += ['  '.join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in rows]
    return '\n'.join(lines)


def write_csv(results: Sequence[BenchResult], path) -> None:
    rows = [asdict(r) for r in results]
    for row in rows:
        row['notes'] = '; '.join(row['notes'])
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [f.name for f in BenchResult.__dataclass_fields__.values()])
        writer.writeheader()
        writer.writerows(rows)


def write_json(results: Sequence[BenchResult], path) -> None:
    Path(path).write_text(json.dumps([asdict(r) for r in results], indent=1))


def plot_pareto(results: Sequence[BenchResult], path) -> None:
    """GMACs vs throughput, one point per model (its best layout at the largest batch), Pareto front drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    best = {}
    for r in results:
        if math.isnan(r.throughput):
            continue
        key = r.model
        if key not in best or (r.batch, r.throughput) > (best[key].batch, best[key].throughput):
            best[key] = r
    points = sorted(best.values(), key=lambda r: r.gmacs)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    front, top = [], -1.0
    for r in points:
        if r.throughput > top:
            front.append(r)
            top = r.throughput
    families = sorted({r.family for r in points})
    colors = {f: plt.cm.tab10(i % 10) for i, f in enumerate(families)}
    for r in points:
        ax.scatter(r.gmacs, r.throughput, s=20 + 4 * r.params_m, color=colors[r.family], alpha=0.8,
                   label=r.family, edgecolors='k', linewidths=0.5)
        ax.annotate(f'{r.model}\n{r.layout}, b{r.batch}', (r.gmacs, r.throughput), fontsize=7,
                    textcoords='offset points', xytext=(5, 4))
    if len(front) > 1:
        ax.plot([r.gmacs for r in front], [r.throughput for r in front], 'k--', lw=0.8, label='Pareto front')
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    mode = points[0].mode if points else 'infer'
    ax.set_xlabel('GMACs per sample (multiply-accumulates; fvcore)')
    ax.set_ylabel(f'throughput, samples/s ({mode})')
    ax.set_title(f'Compute vs measured speed, Pareto front dashed ({torch.get_num_threads()} threads, '
                 f'{"CUDA" if torch.cuda.is_available() else "CPU"})', fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
