"""LEGO bricks: stackable and skippable DiT bricks, as an EDM-preconditioned diffusion denoiser.

Paper: "Learning Stackable and Skippable LEGO Bricks for Efficient, Reconfigurable, and Variable-Resolution
Diffusion Modeling", H. Zheng et al., ICLR 2024 (arXiv:2310.06389).
Official code: https://github.com/JegZheng/LEGODiffusion (commit cfbb6c66, `training/lego_models.py`,
`training/networks.py` `EDMPrecondLEGO`, `generate.py`). The repository is MIT; its vendored NVIDIA EDM
code (`torch_utils/`, `dnnlib/`) is CC BY-NC-SA 4.0 and `lego_models.py` adapts DiT / MAE code (CC BY-NC
4.0). Nothing of theirs is copied here; the released weights are code-executing EDM pickles, so no tag
loads them: convert them once with `zoo weights convert MODEL --checkpoint FILE.pkl --trust-pickle`.

This is a denoiser, not a classifier: `forward(x, sigma, class_labels=None)` returns
D(x) = c_skip x + c_out F(c_in x, ln(sigma) / 4, y) with sigma_data 0.5 (EDM). `num_classes` is the label
dimension (0 = unconditional); `class_labels` is a one-hot float (B, num_classes) as the official code
takes it, or int64 class indices (B,) with -1 for the null label; None is the null label (the all-zero
one-hot, whose embedding is the label layer's bias), the classifier-free-guidance "unconditional" input.

A brick is a DiT (adaLN-Zero) applied independently to every non-overlapping r x r region of the
full-resolution image (regions folded into the batch, attention local to a region), with a fixed 2-D
sin-cos position table over one region's tokens. Brick 0 sees [c_in x, row, column] (coordinates in
[-1, 1] over the whole image); brick k > 0 sees [F_{k-1}, c_in x, row, column] where F_{k-1} is the raw
output of the previous brick. Every brick writes a full-resolution C-channel image. The stacks: PG
(regions small -> full), PR (full -> small) and U (full -> 16 -> 4 -> 16 -> full); the `_old` layouts are
the ones the released LEGO-L-PG/PR-64 checkpoints were trained with.

Differences from the official code (none change its numbers):
  * test-time brick skipping works: `forward(..., bricks=[...])` runs only those bricks, in stack order;
    a brick takes the raw output of the last brick that ran before it (zeros, the F = 0 prediction, when
    none did). The released skip option returns at the last brick (a no-op) and its guided path drops the
    index. `zoo.diffusion.BrickSchedule` picks the bricks of each sampling step (`edm_sample(schedule=...)`,
    `zoo sample --skip-bricks N --skip-ratio R`);
  * the patch embedding runs once on the full image and the tokens are regrouped into regions (the same
    arithmetic as per-region convolutions), and adaLN modulations are computed once per image instead of
    once per region: fvcore counts fewer MACs than the official model (sum over bricks of
    (regions - 1) x (6 depth + 2) x D^2 fewer), outputs are the same;
  * non-square inputs work (each side a multiple of the largest region; the official code asserts square
    region grids); a side that is not such a multiple raises a clear error;
  * label dropout for classifier-free-guidance training is off by default (the official trains with
    probability 0.1: pass `class_dropout_prob=0.1`); the fp16 paths are gone (use autocast);
  * timm-style names (`bricks.i`, `patch_embed`, `y_embedder` as the Linear); `checkpoint_filter_fn` maps
    the official `model.model.i.*` / `model.t_embedder` / `model.y_embedder.embedding_table` keys.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Attention, DropPath, GELUTanh, PatchEmbed
from timm.models import generate_default_cfgs, register_model

from zoo.hub import build_model, unwrap_state_dict
from zoo.layers import Linear, LinearAct, Mlp

__all__ = ['LEGO', 'LegoBrick', 'DiTBlock', 'checkpoint_filter_fn', 'sincos_pos_embed_2d']

SIGMA_DATA = 0.5
LATENT_SCALE = 0.18215  # SD-VAE latents are multiplied by this before diffusion
_NO_CLASSIFIER = ('LEGO is a diffusion denoiser, not a classifier: it has no classifier head to get or reset. '
                  'Its label input is `num_classes` (the label dimension, 0 = unconditional), set at creation.')


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table over a grid x grid token grid, (1, grid * grid, dim), row-major tokens.

    The first half of the channels encodes the column index, the second half the row index (MAE's
    meshgrid puts w first); each half is [sin(pos * w), cos(pos * w)] with w = 10000^(-k / (dim / 4)).
    Built in float64 on the CPU (no data ops on the target device, so meta-device builds work).
    """
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64, device='cpu') / quarter)
    pos = torch.arange(grid, dtype=torch.float64, device='cpu')
    rows, cols = torch.meshgrid(pos, pos, indexing='ij')

    def encode(p: torch.Tensor) -> torch.Tensor:
        angles = p.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float().unsqueeze(0)


def _check_input(x: torch.Tensor, max_region: int) -> None:
    h, w = x.shape[-2], x.shape[-1]
    if x.dim() != 4 or h % max_region != 0 or w % max_region != 0:
        raise ValueError(
            'LEGO takes (B, C, H, W) inputs whose height and width are multiples of its largest brick region ('
            + str(max_region) + '), got shape ' + str(list(x.shape)) + '.')


def _sigma_column(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sigma (a scalar or one per sample) as (B, 1, 1, 1) in x's dtype."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(-1, 1, 1, 1).expand(x.shape[0], 1, 1, 1)


def _with_coords(x: torch.Tensor) -> torch.Tensor:
    """Append the row and column coordinates, each in [-1, 1] over the whole image: (B, C + 2, H, W)."""
    b, _, h, w = x.shape
    rows = (torch.arange(h, device=x.device).to(torch.float32) / (h - 1) - 0.5) * 2.0
    cols = (torch.arange(w, device=x.device).to(torch.float32) / (w - 1) - 0.5) * 2.0
    rows = rows.to(x.dtype).reshape(1, 1, h, 1).expand(b, 1, h, w)
    cols = cols.to(x.dtype).reshape(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([x, rows, cols], dim=1)


def _label_one_hot(
        class_labels: Optional[torch.Tensor], batch: int, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """One-hot float labels (B, num_classes) from one-hot / probability labels, int class indices (-1 = null) or
    None (the null label, all zeros)."""
    if class_labels is None:
        return torch.zeros(batch, num_classes, dtype=like.dtype, device=like.device)
    if class_labels.is_floating_point():
        labels = class_labels.to(like.dtype).reshape(-1, num_classes)
    else:
        idx = class_labels.reshape(-1).to(torch.long)
        labels = F.one_hot(idx.clamp(min=0), num_classes).to(like.dtype) * (idx >= 0).to(like.dtype).unsqueeze(1)
    if labels.shape[0] == 1 and batch != 1:
        labels = labels.expand(batch, num_classes)
    return labels


def _to_regions(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, GH, GW, D) patch tokens of the whole image -> (B, L, grid * grid, D): row-major regions of
    grid x grid tokens, row-major tokens within a region."""
    b, gh, gw, d = tokens.shape
    nh, nw = gh // grid, gw // grid
    tokens = tokens.reshape(b, nh, grid, nw, grid, d).permute(0, 1, 3, 2, 4, 5)
    return tokens.reshape(b, nh * nw, grid * grid, d)


def _from_regions(out: torch.Tensor, h: int, w: int, grid: int, patch: int, chans: int) -> torch.Tensor:
    """(B, L, grid * grid, patch * patch * C) per-token pixels -> the (B, C, H, W) image."""
    b = out.shape[0]
    side = grid * patch
    nh, nw = h // side, w // side
    out = out.reshape(b, nh, nw, grid, grid, patch, patch, chans).permute(0, 7, 1, 3, 5, 2, 4, 6)
    return out.reshape(b, chans, h, w)


# shape- and value-dependent helpers are leaves for fx
for _fn in ('_check_input', '_sigma_column', '_with_coords', '_label_one_hot', '_to_regions', '_from_regions'):
    torch.fx.wrap(_fn)


def _embed_patches(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], p: int) -> torch.Tensor:
    """A stride-p p x p convolution (`weight` D x C x p x p) as one matmul over the unfolded patches:
    (B, C, H, W) -> (B, H/p, W/p, D).

    The same sums as the convolution, and what the bf16 path needs: oneDNN's bf16 convolution (torch 2.14, AMX)
    returns wrong numbers for a stride-8 8 x 8 kernel over 8 channels (brick 1 of the PG / PR models; relative
    error ~1 against fp32, tests/zoo/test_bf16.py), where a matmul is exact to bf16."""
    b, c, h, w = x.shape
    patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h // p, w // p, c * p * p)
    return F.linear(patches, weight.flatten(1), bias)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift, in one pass over x."""
    return torch.addcmul(shift, x, 1 + scale)


class TimestepEmbedder(nn.Module):
    """EDM positional embedding of the noise level ([cos, sin], 256 channels), then Linear-SiLU-Linear."""

    def __init__(self, dim: int, freq_dim: int = 256, dd=None):
        super().__init__()
        dd = dd or {}
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(Linear(freq_dim, dim, **dd), nn.SiLU(), Linear(dim, dim, **dd))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = (1.0 / 10000) ** (torch.arange(half, dtype=torch.float32, device=c_noise.device) / half)
        args = torch.outer(c_noise, freqs.to(c_noise.dtype))
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=1))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block on region tokens (B, L, T, D); the condition c is (B, D), one per image."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4., drop_path: float = 0., dd=None):
        super().__init__()
        dd = dd or {}
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6, **dd)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True, **dd)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=GELUTanh, **dd)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), Linear(dim, 6 * dim, **dd))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def reparameterize(self):
        """Inference form (timm's `reparameterize_model`): the attention's linear layers as zoo.layers.LinearAct,
        as every other linear layer here (zoo.layers.Linear, Mlp: weights cast once, prepacked, the MLP's GELU
        inside its first matmul)."""
        if isinstance(self.attn.qkv, nn.Linear):
            self.attn.qkv, self.attn.proj = LinearAct(self.attn.qkv), LinearAct(self.attn.proj)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mod = self.adaLN_modulation(c).unsqueeze(1).unsqueeze(1)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mod.chunk(6, dim=-1)
        b, l, t, d = x.shape
        h = self.attn(modulate(self.norm1(x), shift_a, scale_a).reshape(b * l, t, d)).reshape(b, l, t, d)
        if self.training:  # drop path acts in training only
            x = x + self.drop_path(gate_a * h)
            return x + self.drop_path(gate_m * self.mlp(modulate(self.norm2(x), shift_m, scale_m)))
        x = torch.addcmul(x, gate_a, h)  # x + gate * h in one pass
        return torch.addcmul(x, gate_m, self.mlp(modulate(self.norm2(x), shift_m, scale_m)))


class FinalLayer(nn.Module):
    """LayerNorm, adaLN shift / scale, then a linear map to patch * patch * C pixels per token."""

    def __init__(self, dim: int, patch_size: int, out_chans: int, dd=None):
        super().__init__()
        dd = dd or {}
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6, **dd)
        self.linear = Linear(dim, patch_size * patch_size * out_chans, **dd)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), Linear(dim, 2 * dim, **dd))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).unsqueeze(1).unsqueeze(1).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class LegoBrick(nn.Module):
    """One LEGO brick: a DiT over every r x r region (patch p, (r / p)^2 tokens a region) of the full image."""

    def __init__(
            self,
            region: int,
            patch_size: int,
            in_chans: int,
            out_chans: int,
            dim: int,
            depth: int,
            num_heads: int,
            mlp_ratio: float = 4.,
            drop_path: Sequence[float] = (),
            dd=None,
    ):
        super().__init__()
        dd = dd or {}
        if region % patch_size:
            raise ValueError(f'brick region {region} is not a multiple of its patch size {patch_size}')
        self.region = region
        self.patch_size = patch_size
        self.grid = region // patch_size
        self.out_chans = out_chans
        self.grad_checkpointing = False
        self.patch_embed = PatchEmbed(None, patch_size, in_chans, dim, output_fmt='NHWC', bias=True, **dd)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid ** 2, dim, **dd), requires_grad=False)
        drop_path = list(drop_path) or [0.] * depth
        self.blocks = nn.ModuleList([DiTBlock(dim, num_heads, mlp_ratio, drop_path[j], dd) for j in range(depth)])
        self.final_layer = FinalLayer(dim, patch_size, out_chans, dd)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        proj = self.patch_embed.proj
        tokens = self.patch_embed.norm(_embed_patches(x, proj.weight, proj.bias, self.patch_size))
        tokens = _to_regions(tokens, self.grid) + self.pos_embed
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                tokens = torch.utils.checkpoint.checkpoint(block, tokens, c, use_reentrant=False)
            else:
                tokens = block(tokens, c)
        return _from_regions(self.final_layer(tokens, c), h, w, self.grid, self.patch_size, self.out_chans)


class LEGO(nn.Module):
    """LEGO diffusion denoiser with EDM preconditioning (see the module docstring).

    Args:
        img_size: default input side (example inputs, cfg); any side that is a multiple of the largest region works.
        in_chans: image / latent channels C.
        num_classes: label dimension (one-hot width); 0 = unconditional.
        regions, patch_sizes, depths: per brick, in stack order.
        embed_dim, num_heads, mlp_ratio: shared by every brick (one time / label embedder serves all).
        sigma_data: EDM data standard deviation.
        class_dropout_prob: probability of replacing a label by the null label in training mode (for
            classifier-free guidance; the official training uses 0.1).
        drop_path_rate: stochastic depth over all blocks of all bricks (the official models use none).
    """

    def __init__(
            self,
            img_size: int = 64,
            in_chans: int = 3,
            num_classes: int = 1000,
            regions: Sequence[int] = (4, 16, 64),
            patch_sizes: Sequence[int] = (2, 8, 2),
            depths: Sequence[int] = (2, 4, 6),
            embed_dim: int = 384,
            num_heads: int = 6,
            mlp_ratio: float = 4.,
            sigma_data: float = SIGMA_DATA,
            class_dropout_prob: float = 0.,
            drop_path_rate: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        if not (len(regions) == len(patch_sizes) == len(depths)) or not regions:
            raise ValueError('regions, patch_sizes and depths need one entry per brick')
        dd = {'device': device, 'dtype': dtype}
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.sigma_data = sigma_data
        self.class_dropout_prob = class_dropout_prob
        self.max_region = max(regions)
        self.num_features = in_chans  # forward_features gives the raw C-channel network output
        self.grad_checkpointing = False

        self.t_embedder = TimestepEmbedder(embed_dim, dd=dd)
        self.y_embedder = Linear(num_classes, embed_dim, **dd) if num_classes > 0 else None
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        bricks = []
        for i, (region, patch, depth) in enumerate(zip(regions, patch_sizes, depths)):
            start = sum(depths[:i])
            bricks.append(LegoBrick(
                region, patch, in_chans + 2 if i == 0 else 2 * in_chans + 2, in_chans, embed_dim, depth, num_heads,
                mlp_ratio, dpr[start:start + depth], dd))
        self.bricks = nn.ModuleList(bricks)
        self.feature_info = [dict(num_chs=in_chans, reduction=1, module=f'bricks.{i}') for i in range(len(bricks))]
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """The official init: xavier-uniform linears and patch embeddings, zero biases, N(0, 0.02) label and
        time embeddings, zero adaLN and output layers (a fresh model predicts F = 0), sin-cos positions."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for brick in self.bricks:
            w = brick.patch_embed.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(brick.patch_embed.proj.bias)
            for block in brick.blocks:
                nn.init.zeros_(block.adaLN_modulation[-1].weight)
                nn.init.zeros_(block.adaLN_modulation[-1].bias)
            for layer in (brick.final_layer.adaLN_modulation[-1], brick.final_layer.linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            if not brick.pos_embed.is_meta:
                brick.pos_embed.copy_(sincos_pos_embed_2d(brick.pos_embed.shape[-1], brick.grid))
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)

    @property
    def num_bricks(self) -> int:
        return len(self.bricks)

    @torch.jit.ignore
    def example_inputs(self, batch_size: int = 1) -> Tuple[torch.Tensor, ...]:
        """(x, sigma, class_labels) for benchmarks and tracing: noisy samples at mixed noise levels, one-hot labels
        (without labels for an unconditional model)."""
        g = torch.Generator().manual_seed(0)
        p = next(self.parameters())
        device = p.device if p.device.type != 'meta' else torch.device('cpu')
        x = torch.randn(batch_size, self.in_chans, self.img_size, self.img_size, generator=g).to(device)
        sigma = torch.exp(torch.linspace(-1.0, 2.0, batch_size)) if batch_size > 1 else torch.ones(1)
        sigma = sigma.to(device)
        if not self.num_classes:
            return x, sigma
        labels = torch.randint(0, self.num_classes, (batch_size,), generator=g)
        return x, sigma, F.one_hot(labels, self.num_classes).float().to(device)

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^t_embedder|^y_embedder',
            blocks=r'^bricks\.(\d+)' if coarse else [(r'^bricks\.(\d+)\.blocks\.(\d+)', None),
                                                     (r'^bricks\.(\d+)\.(patch_embed|pos_embed|final_layer)', None)],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable
        for brick in self.bricks:
            brick.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        raise NotImplementedError(_NO_CLASSIFIER)

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        raise NotImplementedError(_NO_CLASSIFIER)

    def _bricks_to_run(self, bricks: Optional[List[int]]) -> List[bool]:
        n = len(self.bricks)
        if bricks is None:
            return [True] * n
        run = [False] * n
        for i in bricks:
            k = i + n if i < 0 else i
            if k < 0 or k >= n:
                raise ValueError('brick index ' + str(i) + ' out of range for ' + str(n) + ' bricks')
            run[k] = True
        if not any(run):
            raise ValueError('bricks selects no brick: at least one must run')
        return run

    def condition(self, sigma: torch.Tensor, class_labels: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """c = t_emb(ln(sigma) / 4) + y_emb(labels), one row per image; sigma is (B, 1, 1, 1)."""
        c = self.t_embedder(sigma.log().flatten() / 4)
        if self.y_embedder is not None:
            labels = _label_one_hot(class_labels, like.shape[0], self.num_classes, like)
            if self.training and self.class_dropout_prob > 0:
                keep = torch.rand(labels.shape[0], 1, device=labels.device) >= self.class_dropout_prob
                labels = labels * keep.to(labels.dtype)
            c = c + self.y_embedder(labels)
        return c

    def _run_bricks(
            self,
            x: torch.Tensor,
            sigma: torch.Tensor,
            class_labels: Optional[torch.Tensor],
            bricks: Optional[List[int]],
    ) -> List[torch.Tensor]:
        """Raw outputs F of the bricks that run, in stack order; sigma is (B, 1, 1, 1)."""
        if not torch.jit.is_scripting():
            if isinstance(bricks, torch.fx.Proxy):
                bricks = None  # an fx trace without concrete bricks captures the whole stack
        run = self._bricks_to_run(bricks)
        _check_input(x, self.max_region)
        c = self.condition(sigma, class_labels, x)
        h = _with_coords(x * (1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()))
        outs: List[torch.Tensor] = []
        prev: Optional[torch.Tensor] = None
        for i, brick in enumerate(self.bricks):
            if run[i]:
                if i == 0:
                    inp = h
                elif prev is None:  # no earlier brick ran: the F = 0 prediction takes its slot
                    inp = torch.cat([torch.zeros_like(x), h], dim=1)
                else:
                    inp = torch.cat([prev, h], dim=1)
                prev = brick(inp, c)
                outs.append(prev)
        return outs

    def precondition(self, x: torch.Tensor, sigma: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """D = c_skip x + c_out F for a raw network output F; sigma is a scalar, (B,) or (B, 1, 1, 1)."""
        sigma = _sigma_column(sigma, x)
        sd2 = self.sigma_data ** 2
        c_skip = sd2 / (sigma ** 2 + sd2)
        c_out = sigma * self.sigma_data / (sigma ** 2 + sd2).sqrt()
        return c_skip * x + c_out * raw

    def forward_features(
            self,
            x: torch.Tensor,
            sigma: torch.Tensor,
            class_labels: Optional[torch.Tensor] = None,
            bricks: Optional[List[int]] = None,
    ) -> torch.Tensor:
        """The raw network output F(c_in x, ln(sigma) / 4, y) of the last brick that runs (B, C, H, W)."""
        return self._run_bricks(x, _sigma_column(sigma, x), class_labels, bricks)[-1]

    @torch.jit.ignore
    def forward_intermediates(
            self,
            x: torch.Tensor,
            sigma: torch.Tensor,
            class_labels: Optional[torch.Tensor] = None,
            bricks: Optional[List[int]] = None,
            precondition: bool = False,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """(final output, every brick's output) for the bricks that run: raw F by default, the preconditioned D of
        each brick with `precondition=True` (what the official joint training puts a loss on)."""
        sigma = _sigma_column(sigma, x)
        outs = self._run_bricks(x, sigma, class_labels, bricks)
        if precondition:
            outs = [self.precondition(x, sigma, f) for f in outs]
        return outs[-1], outs

    @torch.jit.ignore
    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError(_NO_CLASSIFIER + ' `precondition(x, sigma, F)` maps forward_features to forward.')

    def forward(
            self,
            x: torch.Tensor,
            sigma: torch.Tensor,
            class_labels: Optional[torch.Tensor] = None,
            bricks: Optional[List[int]] = None,
    ) -> torch.Tensor:
        """The denoised estimate D(x; sigma, y). `bricks` (indices in stack order, negatives from the end) runs only
        those bricks; None runs all."""
        sigma = _sigma_column(sigma, x)
        return self.precondition(x, sigma, self._run_bricks(x, sigma, class_labels, bricks)[-1])


def checkpoint_filter_fn(state_dict, model: LEGO) -> Dict[str, torch.Tensor]:
    """Convert an official checkpoint (the `EDMPrecondLEGO` state_dict, its module, or an EDM training pickle's
    dict with 'ema' already unpickled) to our names."""
    if isinstance(state_dict, dict) and isinstance(state_dict.get('ema'), nn.Module):
        state_dict = state_dict['ema']
    if isinstance(state_dict, nn.Module):
        state_dict = state_dict.state_dict()
    state_dict = unwrap_state_dict(state_dict)
    if any(k.startswith('bricks.') for k in state_dict):
        return state_dict
    out = {}
    for key, value in state_dict.items():
        if key.startswith('model.'):
            key = key[len('model.'):]  # EDMPrecondLEGO.model -> LEGO
        if key.startswith('model.'):
            key = 'bricks.' + key[len('model.'):]
        if key.startswith('map_augment.'):
            continue  # augment conditioning (augment_dim > 0) is not part of the released models
        key = key.replace('.x_embedder.', '.patch_embed.').replace('y_embedder.embedding_table.', 'y_embedder.')
        out[key] = value
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> LEGO:
    return build_model(LEGO, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **kwargs)


_NOTES = (
    'Diffusion denoiser with EDM preconditioning: forward(x, sigma, class_labels=None) -> D(x) = c_skip x + '
    'c_out F(c_in x, ln(sigma)/4, y), sigma_data 0.5; forward_features gives the raw F. class_labels: one-hot '
    'float (B, num_classes) or int64 indices (-1 / None = null label); num_classes is the label dimension '
    '(0 = unconditional). Sample with zoo.diffusion.edm_sample or `zoo sample`; skip bricks with forward(..., '
    'bricks=[...]) or zoo.diffusion.BrickSchedule.',
    'No safe weights exist: the released checkpoints (HF hjzheng/LEGO-Diffusion) are EDM pickles that run code '
    'when loaded; convert one where you trust it with `zoo weights convert MODEL --checkpoint F.pkl '
    '--trust-pickle`. License lineage: repo and weights MIT, vendored EDM code CC BY-NC-SA 4.0, DiT/MAE-derived '
    'model code CC BY-NC 4.0.',
)


def _cfg(chans: int, size: int, num_classes: int = 1000, **kwargs):
    pixels = chans == 3
    return {
        'url': None, 'num_classes': num_classes, 'input_size': (chans, size, size), 'fixed_input_size': False,
        'crop_pct': 1.0, 'interpolation': 'bicubic',
        # data = (value - mean) / std: pixels in [-1, 1], or SD-VAE latents x 0.18215
        'mean': (0.5,) * 3 if pixels else (0.,) * chans, 'std': (0.5,) * 3 if pixels else (1 / LATENT_SCALE,) * chans,
        'first_conv': 'bricks.0.patch_embed.proj', 'classifier': None, 'license': 'mit',
        'paper_ids': 'arXiv:2310.06389',
        'paper_name': 'Learning Stackable and Skippable LEGO Bricks for Efficient, Reconfigurable, and '
                      'Variable-Resolution Diffusion Modeling',
        'origin_url': 'https://github.com/JegZheng/LEGODiffusion',
        'notes': _NOTES + ((('ImageNet 64x64 pixels' if pixels else f'SD-VAE latents of {size * 8}x{size * 8} '
                             'images (ImageNet 256 / 512)') + ' in the paper.'),),
        **kwargs,
    }


_PIXELS_64, _LATENT_32, _LATENT_64 = _cfg(3, 64), _cfg(4, 32), _cfg(4, 64)
default_cfgs = generate_default_cfgs({
    'lego_s_pg_64': _PIXELS_64, 'lego_s_pr_64': _PIXELS_64, 'lego_s_u_32': _LATENT_32, 'lego_s_u_64': _LATENT_64,
    'lego_l_pg_32': _LATENT_32, 'lego_l_pr_32': _LATENT_32, 'lego_l_pg_64': _PIXELS_64, 'lego_l_pr_64': _PIXELS_64,
    'lego_l_pg_64_old': _PIXELS_64, 'lego_l_pr_64_old': _PIXELS_64, 'lego_l_u_32': _LATENT_32,
    'lego_l_u_64': _LATENT_64, 'lego_xl_pg_32': _LATENT_32, 'lego_xl_pr_32': _LATENT_32,
    'lego_xl_pg_64': _PIXELS_64, 'lego_xl_pr_64': _PIXELS_64, 'lego_xl_u_32': _LATENT_32, 'lego_xl_u_64': _LATENT_64,
})

_SIZES = {'s': dict(embed_dim=384, num_heads=6), 'l': dict(embed_dim=1024, num_heads=16),
          'xl': dict(embed_dim=1152, num_heads=16)}


def _lego(variant: str, pretrained: bool, layout: str, img: int, chans: int, depths: Sequence[int], **kwargs) -> LEGO:
    """layout 'pg': regions 4 -> 16 -> full; 'pr': full -> 16 -> 4; 'u': full -> 16 -> 4 -> 16 -> full."""
    regions = {'pg': (4, 16, img), 'pr': (img, 16, 4), 'u': (img, 16, 4, 16, img)}[layout]
    args = dict(img_size=img, in_chans=chans, regions=regions, patch_sizes=tuple(8 if r == 16 else 2 for r in regions),
                depths=tuple(depths), **_SIZES[variant.split('_')[1]])
    return _create(variant, pretrained, **{**args, **kwargs})


@register_model
def lego_s_pg_64(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-S-PG, ImageNet 64x64 pixels: bricks 4/2/2 -> 16/8/4 -> 64/2/6 (region/patch/depth), 34.1M params."""
    return _lego('lego_s_pg_64', pretrained, 'pg', 64, 3, (2, 4, 6), **kwargs)


@register_model
def lego_s_pr_64(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-S-PR, ImageNet 64x64 pixels: bricks 64/2/6 -> 16/8/4 -> 4/2/2, 34.1M params."""
    return _lego('lego_s_pr_64', pretrained, 'pr', 64, 3, (6, 4, 2), **kwargs)


@register_model
def lego_s_u_32(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-S-U on 4x32x32 latents: bricks 32/2/6 -> 16/8/4 -> 4/2/2 -> 16/8/4 -> 32/2/6, 61.6M params."""
    return _lego('lego_s_u_32', pretrained, 'u', 32, 4, (6, 4, 2, 4, 6), **kwargs)


@register_model
def lego_s_u_64(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-S-U on 4x64x64 latents: bricks 64/2/6 -> 16/8/4 -> 4/2/2 -> 16/8/4 -> 64/2/6, 62.2M params."""
    return _lego('lego_s_u_64', pretrained, 'u', 64, 4, (6, 4, 2, 4, 6), **kwargs)


@register_model
def lego_l_pg_32(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-L-PG on 4x32x32 latents: bricks 4/2/4 -> 16/8/8 -> 32/2/12, 463.3M params."""
    return _lego('lego_l_pg_32', pretrained, 'pg', 32, 4, (4, 8, 12), **kwargs)


@register_model
def lego_l_pr_32(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-L-PR on 4x32x32 latents: bricks 32/2/12 -> 16/8/8 -> 4/2/4, 463.3M params."""
    return _lego('lego_l_pr_32', pretrained, 'pr', 32, 4, (12, 8, 4), **kwargs)


@register_model
def lego_l_pg_64(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-L-PG, 64x64 pixels (current layout): bricks 4/2/6 -> 16/8/8 -> 64/2/12, 501.6M params."""
    return _lego('lego_l_pg_64', pretrained, 'pg', 64, 3, (6, 8, 12), **kwargs)


@register_model
def lego_l_pr_64(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-L-PR, 64x64 pixels (current layout): bricks 64/2/12 -> 16/8/8 -> 4/2/6, 501.6M params."""
    return _lego('lego_l_pr_64', pretrained, 'pr', 64, 3, (12, 8, 6), **kwargs)


@register_model
def lego_l_pg_64_old(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-L-PG, ImageNet 64x64 pixels, the released checkpoint's layout: 4/2/6 -> 16/8/6 -> 64/2/12, 463.8M."""
    return _lego('lego_l_pg_64_old', pretrained, 'pg', 64, 3, (6, 6, 12), **kwargs)


@register_model
def lego_l_pr_64_old(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-L-PR, ImageNet 64x64 pixels, the released checkpoint's layout: 64/2/12 -> 16/8/6 -> 4/2/6, 463.8M."""
    return _lego('lego_l_pr_64_old', pretrained, 'pr', 64, 3, (12, 6, 6), **kwargs)


@register_model
def lego_l_u_32(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-L-U on 4x32x32 latents: bricks 32/2/12 -> 16/8/8 -> 4/2/6 -> 16/8/8 -> 32/2/12, 884.3M params."""
    return _lego('lego_l_u_32', pretrained, 'u', 32, 4, (12, 8, 6, 8, 12), **kwargs)


@register_model
def lego_l_u_64(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-L-U on 4x64x64 latents: bricks 64/2/12 -> 16/8/8 -> 4/2/6 -> 16/8/8 -> 64/2/12, 885.9M params."""
    return _lego('lego_l_u_64', pretrained, 'u', 64, 4, (12, 8, 6, 8, 12), **kwargs)


@register_model
def lego_xl_pg_32(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-XL-PG on 4x32x32 latents: bricks 4/2/4 -> 16/8/12 -> 32/2/14, 729.4M params."""
    return _lego('lego_xl_pg_32', pretrained, 'pg', 32, 4, (4, 12, 14), **kwargs)


@register_model
def lego_xl_pr_32(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-XL-PR on 4x32x32 latents: bricks 32/2/14 -> 16/8/12 -> 4/2/4, 729.4M params."""
    return _lego('lego_xl_pr_32', pretrained, 'pr', 32, 4, (14, 12, 4), **kwargs)


@register_model
def lego_xl_pg_64(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-XL-PG, 64x64 pixels: bricks 4/2/4 -> 16/8/12 -> 64/2/14, 730.0M params."""
    return _lego('lego_xl_pg_64', pretrained, 'pg', 64, 3, (4, 12, 14), **kwargs)


@register_model
def lego_xl_pr_64(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-XL-PR, 64x64 pixels: bricks 64/2/14 -> 16/8/12 -> 4/2/4, 730.0M params."""
    return _lego('lego_xl_pr_64', pretrained, 'pr', 64, 3, (14, 12, 4), **kwargs)


@register_model
def lego_xl_u_32(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-XL-U on 4x32x32 latents (the released ImageNet-256 checkpoint), 1262.0M params.

    Bricks 32/2/14 -> 16/8/10 -> 4/2/4 -> 16/8/10 -> 32/2/14 (region/patch/depth)."""
    return _lego('lego_xl_u_32', pretrained, 'u', 32, 4, (14, 10, 4, 10, 14), **kwargs)


@register_model
def lego_xl_u_64(pretrained: bool = False, **kwargs) -> LEGO:
    """LEGO-XL-U on 4x64x64 latents (ImageNet 512), 1359.4M params.

    Bricks 64/2/14 -> 16/8/12 -> 4/2/4 -> 16/8/12 -> 64/2/14 (region/patch/depth)."""
    return _lego('lego_xl_u_64', pretrained, 'u', 64, 4, (14, 12, 4, 12, 14), **kwargs)
