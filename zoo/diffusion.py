"""Sampling from the zoo's EDM denoisers (LEGO): the EDM Heun sampler, classifier-free guidance, brick schedules.

`edm_sample` is the deterministic 2nd-order Heun sampler of EDM (Karras et al., arXiv:2206.00364) as the
LEGO release runs it (`generate.py` `edm_lego_sampler`): Karras sigmas (sigma_min 0.002, sigma_max 80,
rho 7), float64 state, the denoiser in float32, optional churn, and classifier-free guidance
D = D_null + s (D_cond - D_null) on all channels, cond and null batched in one call (the null label is
the all-zero one-hot). `generate` adds the release's seeding: one generator per seed draws that
sample's noise (and, with no class given, its random class), so a seed gives the same image whatever
the batch.

Brick skipping: a schedule is any callable `(step, num_steps, sigma) -> bricks or None` (None = every
brick), passed as `schedule=`; the denoiser is then called with `bricks=...`. `BrickSchedule` covers the
release's `--skip_bricks --skip_ratio r` option: every brick up to step int(num_steps * r), then the top
brick(s) dropped. The release's own option is a no-op (it returns at the last brick, and its guided path
ignores the index); this one skips, guided or not.

Precision: `precision='bf16'` (`zoo sample --precision bf16`) runs each denoiser call under
`zoo.precision.autocast` (bfloat16 autocast: on CPU, oneDNN's AMX / AVX-512 bf16 kernels); its output is
taken back to float64 at once, so the sampler's state (x, the sigma steps, the Heun slopes) never leaves
float64 and the guidance combination is done outside autocast, in the dtype the denoiser was called in.
"""
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch

from zoo.errors import InputError
from zoo.precision import autocast, check_precision

__all__ = ['BrickSchedule', 'karras_sigmas', 'guided_denoise', 'edm_sample', 'generate', 'to_uint8', 'save_grid']

Schedule = Callable[[int, int, float], Optional[Sequence[int]]]


@dataclass(frozen=True)
class BrickSchedule:
    """Run every brick for steps 0 .. int(num_steps * start), then only `late_bricks` (indices in stack order).

    `BrickSchedule.skip_top(num_bricks, start=0.6, num_skip=1)` drops the last `num_skip` bricks in the late
    steps, what the release's `--skip_bricks` intends with its default ratio 0.6. A schedule's `bricks_at`
    lists the bricks of every step, for counting compute.
    """
    late_bricks: Sequence[int]
    start: float = 0.6

    @classmethod
    def skip_top(cls, num_bricks: int, start: float = 0.6, num_skip: int = 1) -> 'BrickSchedule':
        if not 0 < num_skip < num_bricks:
            raise InputError(f'num_skip must leave at least one of {num_bricks} bricks, got {num_skip}')
        return cls(tuple(range(num_bricks - num_skip)), start)

    def __call__(self, step: int, num_steps: int, sigma: float) -> Optional[List[int]]:
        return None if step <= int(num_steps * self.start) else list(self.late_bricks)

    def bricks_at(self, num_steps: int, num_bricks: int) -> List[List[int]]:
        return [list(range(num_bricks)) if b is None else list(b)
                for b in (self(i, num_steps, 0.0) for i in range(num_steps))]


def karras_sigmas(num_steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80., rho: float = 7.,
                  device=None) -> torch.Tensor:
    """EDM's noise levels, float64, with a final 0: (num_steps + 1,)."""
    if num_steps < 1:
        raise InputError(f'num_steps must be at least 1, got {num_steps}')
    i = torch.arange(num_steps, dtype=torch.float64, device=device)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    steps = (hi + i / max(num_steps - 1, 1) * (lo - hi)) ** rho
    return torch.cat([steps, torch.zeros_like(steps[:1])])


def guided_denoise(
        model: torch.nn.Module,
        x: torch.Tensor,
        sigma: torch.Tensor,
        class_labels: Optional[torch.Tensor] = None,
        cfg_scale: Optional[float] = None,
        bricks: Optional[Sequence[int]] = None,
        precision: str = 'fp32',
) -> torch.Tensor:
    """D(x; sigma, y), with classifier-free guidance when `cfg_scale` is set: the conditional and null-label
    inputs run as one batch and D = D_null + s (D_cond - D_null). `bricks` is passed on when set. With
    `precision='bf16'` the model runs under bfloat16 autocast and its output is cast back to x's dtype before
    the guidance combination."""
    kwargs = {} if bricks is None else {'bricks': list(bricks)}

    def run(*inputs):
        with autocast(precision, x.device):
            out = model(*inputs, **kwargs)
        return out.to(x.dtype)

    if cfg_scale is None:
        return run(x, sigma, class_labels)
    if not getattr(model, 'num_classes', 0) or class_labels is None:
        raise InputError('classifier-free guidance needs a class-conditional model and class labels')
    n = x.shape[0]
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(n)
    if class_labels.is_floating_point():
        null = torch.zeros_like(class_labels)
    else:
        null = torch.full_like(class_labels, -1)
    out = run(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([class_labels, null]))
    cond, uncond = out[:n], out[n:]
    return uncond + cfg_scale * (cond - uncond)


@torch.no_grad()
def edm_sample(
        model: torch.nn.Module,
        noise: torch.Tensor,
        class_labels: Optional[torch.Tensor] = None,
        num_steps: int = 18,
        sigma_min: float = 0.002,
        sigma_max: float = 80.,
        rho: float = 7.,
        cfg_scale: Optional[float] = None,
        schedule: Optional[Schedule] = None,
        S_churn: float = 0., S_min: float = 0., S_max: float = float('inf'), S_noise: float = 1.,
        randn_like: Callable[[torch.Tensor], torch.Tensor] = torch.randn_like,
        precision: str = 'fp32',
) -> torch.Tensor:
    """EDM Heun sampling from unit-variance `noise` (B, C, H, W); returns the float64 sample.

    The denoiser runs in the model's dtype, under bfloat16 autocast with `precision='bf16'` (the sampler's state
    stays float64 either way); `schedule(step, num_steps, sigma)` picks the bricks of each step (both Heun
    evaluations of a step use the same bricks). `randn_like` draws the churn noise (used only when S_churn > 0).
    """
    check_precision(precision)
    dtype = next(model.parameters()).dtype
    t_steps = karras_sigmas(num_steps, max(sigma_min, getattr(model, 'sigma_min', 0.)),
                            min(sigma_max, getattr(model, 'sigma_max', float('inf'))), rho, noise.device)
    n = noise.shape[0]

    def denoise(x, t, bricks):
        sigma = torch.full((n,), float(t), dtype=dtype, device=x.device)
        return guided_denoise(model, x.to(dtype), sigma, class_labels, cfg_scale, bricks, precision).to(torch.float64)

    x_next = noise.to(torch.float64) * t_steps[0]
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        x_cur = x_next
        bricks = schedule(i, num_steps, float(t_cur)) if schedule is not None else None
        gamma = min(S_churn / num_steps, math.sqrt(2) - 1) if S_min <= t_cur <= S_max else 0.
        t_hat = t_cur + gamma * t_cur
        x_hat = x_cur
        if S_churn > 0:  # with churn on, noise is drawn at every step (gamma 0 or not), as the release draws it
            x_hat = x_cur + (t_hat ** 2 - t_cur ** 2).sqrt() * S_noise * randn_like(x_cur)
        d_cur = (x_hat - denoise(x_hat, t_hat, bricks)) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i < num_steps - 1:  # Heun correction
            d_prime = (x_next - denoise(x_next, t_next, bricks)) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def generate(
        model: torch.nn.Module,
        seeds: Sequence[int],
        class_idx: Optional[Union[int, Sequence[int]]] = None,
        img_size: Optional[int] = None,
        device=None,
        **sampler_kwargs,
) -> torch.Tensor:
    """Samples for `seeds` (one per seed, each seed's own generator, as the release seeds them): noise
    (B, C, S, S) with S = `img_size` or the model's default, and for a class-conditional model the class
    `class_idx` (one for all or one per seed) or, when None, a random class per seed. `sampler_kwargs` go to
    `edm_sample`. Returns float64 samples (pixels in [-1, 1] or scaled latents)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    chans = model.in_chans
    size = img_size or model.img_size
    gens = [torch.Generator(device).manual_seed(int(s) % (1 << 32)) for s in seeds]
    noise = torch.stack([torch.randn(chans, size, size, generator=g, device=device) for g in gens])
    labels = None
    num_classes = getattr(model, 'num_classes', 0)
    if num_classes:
        idx = torch.stack([torch.randint(num_classes, (), generator=g, device=device) for g in gens])
        if class_idx is not None:  # the random draw above still happens, so the generators stay in step
            idx = torch.as_tensor(class_idx, dtype=torch.long, device=device).reshape(-1).expand(len(seeds))
            if int(idx.min()) < 0 or int(idx.max()) >= num_classes:
                raise InputError(f'class index out of range for {num_classes} classes: {class_idx}')
        labels = torch.nn.functional.one_hot(idx, num_classes).float()
    elif class_idx is not None:
        raise InputError('the model is unconditional (num_classes=0): no class can be given')

    def randn_like(x):
        return torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype, device=x.device) for g in gens])

    return edm_sample(model, noise, labels, randn_like=randn_like, **sampler_kwargs)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images (B, C, H, W) -> uint8 (B, H, W, C), rounded as the release writes its PNGs."""
    return (images * 127.5 + 128).clip(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()


def save_grid(images: torch.Tensor, path, nrow: Optional[int] = None) -> None:
    """Write [-1, 1] images (B, 1 or 3, H, W) as one PNG grid (nrow images a row, default about square)."""
    from PIL import Image
    pixels = to_uint8(images)
    b, h, w, c = pixels.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    grid = torch.zeros(rows * h, nrow * w, c, dtype=torch.uint8)
    for k in range(b):
        r, col = divmod(k, nrow)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = pixels[k]
    array = grid.numpy()
    Image.fromarray(array[:, :, 0] if c == 1 else array, 'L' if c == 1 else 'RGB').save(path)
