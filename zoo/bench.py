"""Params, GMACs, activations, latency and throughput of zoo (and timm) models.

GMACs are multiply-accumulates (what most papers call "FLOPs"), counted by fvcore at batch 1 on the
model's default input, as the specs' figures are: convolutions, matmuls and linears, plus norms and
pooling by fvcore's rules; elementwise ops are not counted. Activations are fvcore's count of
convolution / linear outputs. Both come from one trace.

Models over `LARGE_PARAMS` parameters (the LEGO L / XL denoisers, up to 1.36 B) would take most of an
hour to time on a 2-core CPU: unless `include_large=True`, they are built on the meta device only and
reported with their params and GMACs (torch's `FlopCounterMode` there: matmuls and convolutions, no
norms, so within a few per cent of fvcore's count) and a note, never timed.

Timing runs in `torch.inference_mode` (or forward + backward with `train=True`) after warm-up calls,
because the first calls of a shape are several times slower; the latency is the median call, the
throughput is samples per second over all timed calls (their mean), and the spread is (slowest -
fastest) / median. `max_seconds` bounds each (model, layout, batch) run: warm-up stops after half of
it and timing after all of it (one call of each at least), so a 0.01 s model gets all its `iters`
calls and a 10 s one (RTNet at batch 8) one timed call; a call that the smaller batch predicts to
outlast the whole budget gets no warm-up (its first-call costs are a small part of it). The `calls`
column says how many were timed.

Freed memory: glibc hands large freed blocks back to the kernel and maps fresh ones on the next allocation, so
every first write to each page of a new activation faults; on this VM that was half of P3D-63's time (4 clips
in bf16: 211 -> 116 ms a call). `keep_freed_memory()` (`zoo bench`'s default, `--allocator default` to skip)
keeps freed memory in the heap for reuse, as jemalloc and tcmalloc do (PyTorch's CPU tuning guide recommends
either); the process then holds its peak memory. `machine()` records which allocator policy ran.

`representatives()` is the default set of `zoo bench` (and `make demo`): one model per family, the
family's `demo` model or its smallest, so every family shows in a couple of minutes.
"""
import csv
import ctypes
import ctypes.util
import json
import math
import platform
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import torch

from .precision import PRECISIONS, autocast, check_precision

__all__ = ['BenchResult', 'LARGE_PARAMS', 'PRECISIONS', 'matmul_peak', 'representatives', 'example_inputs',
           'to_channels_last', 'count_params', 'count_macs', 'count_macs_meta', 'bench_model', 'run',
           'keep_freed_memory', 'machine', 'format_table', 'write_csv', 'write_json', 'plot_pareto']

# above this many parameters a model is not timed unless asked (include_large / --include-large)
LARGE_PARAMS = 150_000_000


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
    spread_pct: float = float('nan')
    calls: int = 0
    precision: str = 'fp32'
    gflops: float = float('nan')  # achieved: 2 x GMACs x samples/s
    peak_gflops: float = float('nan')  # this machine's matmul rate in that precision (`matmul_peak`)
    params: int = 0
    threads: int = 0
    device: str = 'cpu'
    notes: List[str] = field(default_factory=list)


def representatives() -> List[str]:
    """One model per family: its `demo` model where the family names one, else its smallest by params."""
    from zoo.models import catalogue, create_model, families, family_of

    members: dict = {}
    for model in catalogue():
        members.setdefault(family_of(model), []).append(model)
    chosen = []
    for name, spec in families().items():
        if spec.demo:
            chosen.append(spec.demo)
        elif members.get(name):
            with torch.device('meta'):
                chosen.append(min(members[name], key=lambda m: count_params(create_model(m))))
    return chosen


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


def _mac_and_act_handles():
    """fvcore's MAC handles (with fused attention as its matmuls, baddbmm as its bmm) and activation handles,
    merged into one handle per op that returns both counts, so one trace gives both."""
    from fvcore.nn.activation_count import _DEFAULT_SUPPORTED_OPS as act_ops
    from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS as mac_ops

    bmm = mac_ops['aten::bmm']
    mac_ops = {**mac_ops, 'aten::scaled_dot_product_attention': _sdpa_macs,
               'aten::baddbmm': lambda inputs, outputs: bmm(inputs[1:3], outputs)}  # bias + batch1 @ batch2

    def total(count) -> float:
        return sum(count.values()) if isinstance(count, Counter) else count

    def merged(mac, act):
        def handle(inputs, outputs):
            return Counter(macs=total(mac(inputs, outputs)) if mac else 0,
                           acts=total(act(inputs, outputs)) if act else 0)
        return handle
    return {op: merged(mac_ops.get(op), act_ops.get(op)) for op in set(mac_ops) | set(act_ops)}


def count_macs(model: torch.nn.Module, inputs: Tuple) -> Tuple[float, float]:
    """(GMACs, activations in millions) for one call, by fvcore from one trace (fused attention counted as its
    matmuls)."""
    from fvcore.nn.jit_analysis import JitModelAnalysis

    model = model.eval()
    with torch.no_grad():
        analysis = JitModelAnalysis(model, inputs).set_op_handle(**_mac_and_act_handles())
        counts = analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).by_operator()
    return counts.get('macs', 0) / 1e9, counts.get('acts', 0) / 1e6


def count_macs_meta(model: torch.nn.Module, inputs: Tuple) -> float:
    """GMACs for one call of a model on the meta device (no memory, no compute): torch's FlopCounterMode,
    which counts matmuls, convolutions and attention (2 FLOPs a MAC) but not norms or pooling."""
    from torch.utils.flop_counter import FlopCounterMode

    inputs = tuple(x.to('meta') if torch.is_tensor(x) else x for x in inputs)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(*inputs)
    return counter.get_total_flops() / 2e9


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """channels_last for 4-D weights and channels_last_3d for 5-D ones (a video model may hold both).

    `.to(memory_format=...)`, not `.contiguous(memory_format=...)`: a 1x1 kernel (O, I, 1, 1) counts as
    contiguous in both formats, so `.contiguous` keeps its plain strides, and oneDNN then takes a slow path for
    the whole convolution (RTNet-50 in bf16 ran 2.2x slower so)."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() in fmt:
                p.data = p.data.to(memory_format=fmt[p.dim()])
    return model


def _to_layout(inputs: Tuple, channels_last: bool) -> Tuple:
    if not channels_last:
        return inputs
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}
    return tuple(x.contiguous(memory_format=fmt[x.dim()]) if torch.is_tensor(x) and x.dim() in fmt else x
                 for x in inputs)


def _time_calls(step, warmup: int, iters: int, max_seconds: Optional[float] = None) -> List[float]:
    """Seconds of each timed call of `step`, after up to `warmup` untimed calls. With `max_seconds`, warm-up
    stops once it has taken half of it and timing once it has taken all of it (one call of each at least)."""
    budget = math.inf if max_seconds is None else max_seconds
    start = time.perf_counter()
    for _ in range(warmup):
        step()
        if time.perf_counter() - start >= budget / 2:
            break
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < iters:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= budget:
            break
    return times


def bench_model(
        model: torch.nn.Module,
        batch_size: int,
        channels_last: bool = False,
        train: bool = False,
        compile: bool = False,
        warmup: int = 3,
        iters: int = 10,
        img_size: Optional[int] = None,
        max_seconds: Optional[float] = None,
        precision: str = 'fp32',
) -> Tuple[float, float, float, int]:
    """(median latency ms, samples/s, spread in % of the median, timed calls) of `model` at `batch_size`;
    `precision='bf16'` runs it under bfloat16 autocast (the weights keep their dtype)."""
    inputs = _to_layout(example_inputs(model, batch_size, img_size), channels_last)
    weights_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    inputs = tuple(x.to(weights_dtype) if torch.is_tensor(x) and x.is_floating_point() else x for x in inputs)
    check_precision(precision)
    if channels_last:
        model = to_channels_last(model)
    fn = torch.compile(model) if compile else model
    if train:
        model.train()

        def step():
            with autocast(precision, model):
                out = fn(*inputs)
            out = out[0] if isinstance(out, (tuple, list)) else out
            out.float().mean().backward()
            model.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast(precision, model):
                fn(*inputs)
    times = _time_calls(step, warmup, iters, max_seconds)
    median = statistics.median(times)
    spread = 100.0 * (max(times) - min(times)) / median if median > 0 else float('nan')
    return median * 1e3, batch_size * len(times) / sum(times), spread, len(times)


_PEAKS: dict = {}


def matmul_peak(precision: str = 'fp32', size: int = 1024, seconds: float = 0.3) -> float:
    """GFLOP/s of a square matmul in `precision` on this machine with the current threads (measured once per
    precision and thread count): the ceiling a model's achieved GFLOP/s is read against."""
    key = (precision, torch.get_num_threads())
    if key not in _PEAKS:
        dtype = PRECISIONS[precision]
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        for _ in range(3):
            a @ b
        calls, start = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - start < seconds:
            a @ b
            calls += 1
        _PEAKS[key] = 2 * size ** 3 * calls / (time.perf_counter() - start) / 1e9
    return _PEAKS[key]


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
        max_seconds: Optional[float] = None,
        include_large: bool = False,
        precision: str = 'fp32',
        weights_dtype: str = 'fp32',
) -> List[BenchResult]:
    """Measure every model in `names`: one row per model x layout x batch size.

    `fuse` times the model after `timm.utils.reparameterize_model` (BatchNorm folding, merged branches)
    for inference; params and GMACs are always those of the model as defined. Models over `LARGE_PARAMS`
    get one row with params and GMACs counted on the meta device and a note, unless `include_large`.
    `max_seconds` bounds each timed run (see the module docstring). `precision='bf16'` times under bfloat16
    autocast, `weights_dtype='bf16'` casts the weights too; each row carries the achieved GFLOP/s and the
    machine's matmul rate in that precision (`matmul_peak`).
    """
    from tqdm.auto import tqdm
    from zoo.models import create_model, family_of

    layouts = [False, True] if channels_last else [False]
    device = machine()['device']
    results = []
    bar = tqdm(total=len(names) * (len(batch_sizes) * len(layouts) if speed else 1), disable=not progress,
               desc='bench', unit='run')
    for name in names:
        bar.set_postfix_str(name)
        with torch.device('meta'):
            model = create_model(name)
        n_params = count_params(model)
        family = family_of(name) or 'timm'
        inputs = example_inputs(model, 1, img_size)
        base = dict(model=name, family=family, params=n_params, params_m=n_params / 1e6,
                    input='x'.join(str(s) for s in inputs[0].shape[1:]), threads=torch.get_num_threads(),
                    device=device)
        if n_params > LARGE_PARAMS and not include_large:
            results.append(BenchResult(**base, gmacs=count_macs_meta(model, inputs), acts_m=float('nan'), notes=[
                f'over {LARGE_PARAMS / 1e6:.0f}M params: not timed (--include-large times it); GMACs counted on '
                'the meta device (torch FlopCounterMode)']))
            bar.update(len(batch_sizes) * len(layouts) if speed else 1)
            continue
        torch.manual_seed(0)
        model = create_model(name).eval()
        inputs = example_inputs(model, 1, img_size)
        gmacs, acts = count_macs(model, inputs)
        base.update(gmacs=gmacs, acts_m=acts, precision=precision)
        model = model.to(PRECISIONS[weights_dtype])
        if not speed:
            results.append(BenchResult(**base))
            bar.update()
            continue
        if fuse and not train:
            from timm.utils import reparameterize_model
            model = reparameterize_model(model, inplace=True)
        for cl in layouts:
            per_sample = None  # seconds a sample took at the last batch size of this layout
            for bs in sorted(batch_sizes):
                # a call expected to outlast the whole budget gets no warm-up: its one-time costs (the first
                # call of a shape) are then a small part of it, and a warm-up would double the run
                long_call = max_seconds is not None and per_sample is not None and per_sample * bs > max_seconds
                latency, throughput, spread, calls = bench_model(
                    model, bs, channels_last=cl, train=train, compile=compile, warmup=0 if long_call else warmup,
                    iters=iters, img_size=img_size, max_seconds=max_seconds, precision=precision)
                per_sample = latency / 1e3 / bs
                results.append(BenchResult(
                    **base, mode='train' if train else 'infer', layout='channels_last' if cl else 'nchw',
                    batch=bs, compiled=compile, fused=fuse and not train, latency_ms=latency, throughput=throughput,
                    spread_pct=spread, calls=calls, gflops=2 * gmacs * throughput * (3 if train else 1),
                    peak_gflops=matmul_peak(precision)))
                bar.update()
            model = model.to(memory_format=torch.contiguous_format)
    bar.close()
    return results


_ALLOCATOR = {'policy': 'default'}


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse rather than return it to the kernel (no mmap'd blocks,
    no trimming): see the module docstring. Returns whether it took (False off glibc)."""
    if _ALLOCATOR['policy'] == 'keep':
        return True
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_max = -1, -4  # mallopt parameters, malloc.h
        ok = libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 2 ** 31 - 1) == 1
    except (OSError, AttributeError, TypeError):
        ok = False
    if ok:
        _ALLOCATOR['policy'] = 'keep'
    return ok


def machine() -> dict:
    """Where the figures were measured: device, threads, torch version, allocator policy."""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    else:
        device = f'cpu ({platform.machine()})'
    return dict(device=device, threads=torch.get_num_threads(), torch=torch.__version__,
                allocator=_ALLOCATOR['policy'])


_COLUMNS = (
    ('model', 'model', '{}'), ('params_m', 'params (M)', '{:.2f}'), ('gmacs', 'GMACs', '{:.3f}'),
    ('acts_m', 'acts (M)', '{:.2f}'), ('input', 'input', '{}'), ('mode', 'mode', '{}'), ('layout', 'layout', '{}'),
    ('fused', 'fused', '{}'), ('batch', 'batch', '{}'), ('latency_ms', 'latency (ms)', '{:.1f}'),
    ('spread_pct', 'spread %', '{:.0f}'), ('calls', 'calls', '{}'), ('throughput', 'samples/s', '{:.1f}'),
    ('precision', 'precision', '{}'), ('gflops', 'GFLOP/s', '{:.0f}'), ('peak_gflops', 'matmul peak', '{:.0f}'),
)


def format_table(results: Iterable[BenchResult]) -> str:
    header = [title for _, title, _ in _COLUMNS]
    results = list(results)
    rows = [[('-' if (isinstance(getattr(r, key), float) and math.isnan(getattr(r, key))) or (key == 'calls' and not r.calls)
              else fmt.format(getattr(r, key))) for key, _, fmt in _COLUMNS] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    where = machine()
    lines = [
        f"{where['device']}, {where['threads']} threads, torch {where['torch']}, allocator {where['allocator']}. "
        'GMACs = multiply-accumulates per sample (the papers\' "FLOPs"), fvcore, batch 1, default input; '
        'latency = median call, samples/s = mean over the timed calls, spread = (slowest - fastest) / median; '
        'GFLOP/s = 2 x GMACs x samples/s (x3 training), against '
        "this machine's square-matmul rate in the same precision (fused fp32 3x3 convolutions run as Winograd, with "
        'fewer multiplications than counted, so a fused fp32 row may pass that rate)',
        '  '.join(h.ljust(w) for h, w in zip(header, widths)),
        '  '.join('-' * w for w in widths),
    ]
    lines += ['  '.join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in rows]
    notes = [(r.model, n) for r in results for n in r.notes]
    lines += [f'note: {model}: {note}' for model, note in dict(notes).items()]
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
