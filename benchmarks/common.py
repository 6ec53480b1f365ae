"""What the `*_vs_official.py` scripts share: their timing arguments, timing each model in each of its layouts
and precisions, and the table of speed ratios against the official code.

The official code always runs in fp32; ours runs in each precision of `--precision` (default both): `fp32`
as built, `bf16` under bfloat16 autocast through `zoo.precision.autocast`, the one precision switch of the
zoo. Every model is timed in every layout the script names (a layout a model cannot run is reported, not
fatal) and compared in its best one at each batch size: the official code's faster layout in fp32 against
ours' faster layout in each precision. Timing (the wall clock, or a CPU clock where a script offers one):
`--warmup` untimed calls of each, then `--iters` rounds in which every series makes one timed call in turn, in
`torch.inference_mode`, so a change in the machine's load weighs on all alike; a speed is the batch (or one
call) over the median call. With several large models in turn, give oneDNN room for all their kernels
(`ONEDNN_PRIMITIVE_CACHE_CAPACITY=8192`; its default of 1024 would rebuild them every round).

A script imports this as `common` (Python puts the script's folder first on the path):

    parser = argparse.ArgumentParser(...)
    common.add_arguments(parser, batch_size=(1, 32))
    args = parser.parse_args(); common.setup(parser, args)
    results = common.compare([common.Contender('official', official, official=True),
                              common.Contender('ours', ours)], lambda bs: (torch.randn(bs, 3, 224, 224),),
                             args, layouts=('nchw', 'channels_last'))
    results.print_ratios()
"""
import argparse
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from zoo.bench import keep_freed_memory, machine
from zoo.precision import PRECISIONS, autocast
from zoo.testing import relative_error

__all__ = ['LAYOUTS', 'Contender', 'Results', 'add_arguments', 'setup', 'to_layout', 'compare', 'precision_errors',
           'format_errors', 'report_errors', 'fused_contender']

# layout -> memory format of each 4-D / 5-D tensor (weights and inputs); other tensors are left as they are.
# 'channels_last' leaves 5-D tensors alone (SpaRTAN's complex 5-D weight cannot be channels_last).
LAYOUTS = {
    'nchw': {4: torch.contiguous_format, 5: torch.contiguous_format},
    'ncthw': {4: torch.contiguous_format, 5: torch.contiguous_format},
    'channels_last': {4: torch.channels_last},
    'channels_last_3d': {4: torch.channels_last, 5: torch.channels_last_3d},
}
_CLOCKS = {'thread': time.thread_time, 'process': time.process_time}


def add_arguments(parser: argparse.ArgumentParser, batch_size: Sequence[int] = (1, 32), threads: Optional[int] = 2,
                  warmup: int = 3, iters: int = 10):
    """The timing arguments every comparison script takes, with that script's defaults."""
    group = parser.add_argument_group('timing (shared by the *_vs_official scripts)')
    group.add_argument('--batch-size', nargs='+', type=int, default=list(batch_size),
                       help=f'batch sizes to time (default: {" ".join(map(str, batch_size))})')
    group.add_argument('--precision', nargs='+', choices=tuple(PRECISIONS), default=list(PRECISIONS),
                       help='precisions to run ours in: fp32, bf16 (bfloat16 autocast); the official code always '
                            'runs fp32 (default: both)')
    group.add_argument('--threads', type=int, default=threads,
                       help='torch threads' + (f' (default: {threads})' if threads else ' (default: torch\'s)'))
    group.add_argument('--allocator', choices=('keep', 'default'), default='keep',
                       help='keep (default): malloc keeps freed memory for reuse, for every contender alike '
                            '(zoo.bench.keep_freed_memory); default: glibc as it starts')
    group.add_argument('--warmup', type=int, default=warmup, help=f'untimed calls first (default: {warmup})')
    group.add_argument('--iters', type=int, default=iters, help=f'timed calls (default: {iters})')
    return group


def setup(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """Checks the timing arguments, drops repeated precisions and sets the thread count."""
    if min(args.batch_size) < 1 or args.iters < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        parser.error('--batch-size, --iters and --threads take positive numbers, --warmup zero or more')
    args.precision = list(dict.fromkeys(args.precision))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.allocator == 'keep' and not keep_freed_memory():
        print('note: could not set malloc to keep freed memory (not glibc?); timing with the default allocator')


def to_layout(obj, layout: str):
    """`obj` (a module: its weights and buffers, in place; or a tensor, a copy) in `layout` (a `LAYOUTS` key)."""
    formats = LAYOUTS[layout]
    if torch.is_tensor(obj):
        return obj.contiguous(memory_format=formats[obj.dim()]) if obj.dim() in formats else obj
    with torch.no_grad():
        for t in list(obj.parameters()) + list(obj.buffers()):
            if t.dim() in formats:
                t.data = t.data.to(memory_format=formats[t.dim()])  # see zoo.bench.to_channels_last
    return obj


def precision_errors(model: torch.nn.Module, inputs: Tuple, reference: torch.Tensor,
                     precisions: Sequence[str]) -> Dict[str, float]:
    """`relative_error` of `model(*inputs)` in each precision but fp32 against the fp32 `reference`."""
    errors = {}
    for precision in precisions:
        if precision != 'fp32':
            with torch.inference_mode(), autocast(precision, model):
                errors[precision] = relative_error(model(*inputs), reference)
    return errors


def format_errors(errors: Dict[str, float]) -> str:
    return ', '.join(f'{precision} (autocast) {err:.2e}' for precision, err in errors.items())


def report_errors(label: str, ours: torch.nn.Module, inputs: Tuple, reference: torch.Tensor,
                  precisions: Sequence[str]) -> float:
    """Prints ours' fp32 relative error against the official fp32 `reference` (the fixtures' tolerance is 1e-4)
    and its error in each other precision; returns the fp32 one."""
    with torch.inference_mode():
        err = relative_error(ours(*inputs), reference)
    print(f'\n{label}: max relative difference of the outputs {err:.2e} (fixture tolerance 1e-4)')
    low = precision_errors(ours, inputs, reference, precisions)
    if low:
        print(f'{label}: ours vs the official fp32 output: {format_errors(low)}')
    return err


def fused_contender(ours: torch.nn.Module, inputs: Tuple, reference: torch.Tensor, precisions: Sequence[str],
                    name: str = 'fused') -> 'Contender':
    """Ours after `timm.utils.reparameterize_model` (the inference form: folded norms, oneDNN-fused layers), with
    its fp32 and low-precision errors against the official fp32 `reference` printed."""
    from timm.utils import reparameterize_model
    fused = reparameterize_model(ours)
    report_errors(f'{name} (reparameterized)', fused, inputs, reference, precisions)
    return Contender(name, fused)


@dataclass
class Contender:
    """A model to time, called as `model(*inputs)`; the official one runs in fp32 only."""
    name: str
    model: torch.nn.Module
    official: bool = False


@dataclass
class Results:
    """Speeds of each series ('official fp32', 'ours bf16', ...) at each batch size in each layout."""
    series: List[str]
    reference: str  # the official series the ratios divide by
    batch_sizes: List[int]
    layouts: List[str]
    unit: str
    speeds: Dict[Tuple[str, int, str], float] = field(default_factory=dict)
    failures: Dict[Tuple[str, int, str], str] = field(default_factory=dict)

    def best(self, series: str, batch: int) -> Tuple[float, Optional[str]]:
        """(speed, layout) of `series`' fastest layout at `batch`; (nan, None) if it ran in none."""
        runs = [(self.speeds[(series, batch, layout)], layout) for layout in self.layouts
                if (series, batch, layout) in self.speeds]
        return max(runs) if runs else (math.nan, None)

    def ratio(self, series: str, batch: int) -> float:
        return self.best(series, batch)[0] / self.best(self.reference, batch)[0]

    def print_ratios(self, title: str = ''):
        """Each series in its best layout at each batch size, and ours / the official code in fp32."""
        ours = [s for s in self.series if s != self.reference]
        print(f'{title + ": " if title else ""}best layout of each, {self.unit} (median call); '
              f'speed ratios against {self.reference}')
        heads = ['batch'] + self.series + [f'{s}/official' for s in ours]
        rows = []
        for bs in self.batch_sizes:
            best = [self.best(s, bs) for s in self.series]
            rows.append([str(bs)] + [f'{speed:.2f} ({layout or "-"})' for speed, layout in best]
                        + [f'{self.ratio(s, bs):.2f}' for s in ours])
        widths = [max(len(row[i]) for row in [heads] + rows) for i in range(len(heads))]
        for row in [heads] + rows:
            print('  '.join(f'{cell:>{w}}' for cell, w in zip(row, widths)))


def _timed_round_robin(calls: Dict[str, Callable], warmup: int, iters: int, clock: str) -> Dict[str, List[float]]:
    """Each call warmed up, then timed in turns (one call of each per round), so a change in the machine's load
    during the run weighs on every series alike instead of on whichever ran then."""
    tick = time.perf_counter if clock == 'wall' else _CLOCKS[clock]
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for _ in range(iters):
        for name, call in calls.items():
            start = tick()
            call()
            times[name].append(tick() - start)
    return times


def _call(model: torch.nn.Module, inputs: Tuple, precision: str):
    sync = inputs and torch.is_tensor(inputs[0]) and inputs[0].device.type == 'cuda'

    def call():
        with torch.inference_mode(), autocast(precision, model):
            model(*inputs)
        if sync:
            torch.cuda.synchronize()
    return call


def compare(contenders: Sequence[Contender], make_inputs: Callable[[int], Tuple], args: argparse.Namespace,
            layouts: Sequence[str] = ('nchw', 'channels_last'), clock: str = 'wall', per_call: bool = False,
            unit: Optional[str] = None) -> Results:
    """Times every contender (the official one in fp32, the others in each of `args.precision`) at each of
    `args.batch_size` in each of `layouts` on `make_inputs(batch)`, printing a row per batch and layout.
    Speeds are samples/s (`per_call`: calls/s) from the median of `args.iters` calls after `args.warmup`.
    `clock`: 'wall' (time.perf_counter), 'thread' or 'process' CPU time. Weights are moved to each
    layout in place; a layout a model cannot run (a RuntimeError) is reported and skipped."""
    official = [c for c in contenders if c.official]
    if len(official) != 1:
        raise ValueError('compare takes exactly one official contender')
    runs = [(c, p) for c in contenders for p in (('fp32',) if c.official else args.precision)]
    series = [f'{c.name} {p}' for c, p in runs]
    unit = unit or ('calls/s' if per_call else 'samples/s')
    results = Results(series, f'{official[0].name} fp32', list(args.batch_size), list(layouts), unit)
    width = {s: max(len(s), 9) for s in series}
    print(f'{unit}, median of {args.iters} calls after {args.warmup} warm-up calls '
          f'({"wall clock" if clock == "wall" else clock + " CPU time"}, {torch.get_num_threads()} threads, '
          f'allocator {machine()["allocator"]})')
    print(f'{"batch":>5}  {"layout":>16}  ' + '  '.join(f'{s:>{width[s]}}' for s in series))
    for bs in args.batch_size:
        inputs = make_inputs(bs)
        for layout in layouts:
            xin = tuple(to_layout(x, layout) if torch.is_tensor(x) else x for x in inputs)
            calls, notes = {}, []
            for (contender, precision), s in zip(runs, series):
                try:
                    to_layout(contender.model, layout)
                    call = _call(contender.model, xin, precision)
                    call()  # a layout the model cannot run fails here, before the timing
                    calls[s] = call
                except RuntimeError as e:
                    results.failures[(s, bs, layout)] = str(e).splitlines()[0] if str(e) else type(e).__name__
                    notes.append(f'{s}: {results.failures[(s, bs, layout)][:70]}')
            times = _timed_round_robin(calls, args.warmup, args.iters, clock)
            cells = []
            for s in series:
                if s not in times:
                    cells.append(f'{"fails":>{width[s]}}')
                    continue
                speed = (1 if per_call else bs) / statistics.median(times[s])
                results.speeds[(s, bs, layout)] = speed
                cells.append(f'{speed:>{width[s]}.2f}')
            print(f'{bs:>5}  {layout:>16}  ' + '  '.join(cells) + ('  (' + '; '.join(notes) + ')' if notes else ''))
    return results
