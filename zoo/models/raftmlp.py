"""RaftMLP: a hierarchical MLP-Mixer whose token mixing is split into vertical and horizontal "raft" MLPs.

Paper: "RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality?",
Y. Tatsunami, M. Taki, ACCV 2022 (arXiv:2108.04384; v1 was titled "RaftMLP: Do MLP-based Models Dream
of Winning Over Computer Vision?").

Reference code: okojoalg/raft-mlp (Apache-2.0, commit 6060d5d9, `libs/models.py`, `libs/modules.py`),
configs `configs/settings/imagenet-raft-mlp-cross-mlp-emb-{s,m,l}.yaml` (serial permuted token mixing,
cross-scale MLP embedding, no shortcut heads). The authors published no weights: every model here has
to be trained (`zoo list` says "no published weights"); `checkpoint_filter_fn` converts checkpoints
saved by the official code (bare or wrapped state_dict) to ours.

The architecture, as the reference code computes it:
  * 4 levels (strides 4/8/16/32). Each opens with a cross-scale embedding: the input unfolded with
    several kernel sizes at one stride (padding (k - stride) // 2), concatenated, then one Linear. That
    is a sum of strided convolutions, which is how it is computed here (one bias, on the first).
  * Each block mixes tokens vertically, then horizontally, then over channels, each as
    x + DropPath(MLP(LayerNorm(x))). The C channels split into C/r rafts of r channels C/r apart
    (channel c = i * C/r + j belongs to raft j); the vertical MLP mixes, for each raft and column,
    the r * H values (i, h) jointly; the horizontal one the r * W values (i, w) of each raft and row.
  * A single LayerNorm after the last level, spatial mean, Linear classifier. GELU is exact, eps 1e-5.

Differences from the reference code (none change its numbers beyond float rounding, ~1e-7):
  * Tokens stay in one B x H x W x C layout; each token MLP permutes its normalised input once, and
    its residual is added in that layout (the reference rearranges with einops around every op).
    The token-mixing LayerNorms therefore use the natural channel order; the reference stores their
    affine parameters in (raft, channel-in-raft) order, which `checkpoint_filter_fn` permutes.
  * Outside training, each level runs a few images at a time (`RaftStage.chunk_elems` tokens x channels,
    about 1.6 MB), so the MLPs' hidden activations stay in cache instead of going through memory for the
    whole batch: about 1.4x faster at batch 8 and up on CPU, same results per image.
  * The embedding runs as convolutions instead of unfold + concatenate + Linear;
    `timm.utils.reparameterize_model(model)` merges its kernels into one convolution (the smaller
    kernels zero-padded into the largest): same outputs, fewer multiply-adds than the GMACs quoted.
  * The token-mixing weights fix the token grids to img_size / 4, 8, 16, 32 (224 -> 56, 28, 14, 7), so
    by default another input size is a clear ValueError (`fixed_input_size` in the cfg). With
    `dynamic_img_size=True` other sizes run as in the reference code: inputs that are not a multiple
    of a level's patch size are resized up (bicubic), and each block resizes its token grid to the
    fixed size for the token MLPs and back (bicubic). The reference keeps those sizes as module state
    set during forward; here they come from the input shape.
  * `drop_path_rate` is the same in every block, as the reference trains it (0.1 there; 0 by default
    here, for inference); `drop_rate` is classifier dropout (the reference has none), `proj_drop_rate`
    the reference's MLP `dropout`.
  * Features: `features_only` / `forward_intermediates` give the output of each level (after its
    blocks), at strides 4/8/16/32. The reference detection/segmentation wrappers take the first
    feature from the level-0 embedding instead (before level 0's blocks); `official_det_features=True`
    reproduces that for loading their downstream checkpoints.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, create_classifier, get_device_dtype, to_2tuple
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from zoo.hub import build_model, set_cfg_input_size, unwrap_state_dict
from zoo.layers import ConvAct, Mlp
from zoo.precision import bf16_matmuls

__all__ = ['RaftMLP']


def _resize_nchw(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bicubic resize (align_corners=False) as the reference code does, or x itself at that size."""
    if x.shape[-2] == size[0] and x.shape[-1] == size[1]:
        return x
    return F.interpolate(x, size=size, mode='bicubic', align_corners=False)


def _check_img_size(x: torch.Tensor, img_size: Tuple[int, int]) -> torch.Tensor:
    if x.dim() != 4 or x.shape[-2] != img_size[0] or x.shape[-1] != img_size[1]:
        raise ValueError(
            f'RaftMLP expects B x C x {img_size[0]} x {img_size[1]} inputs (its token-mixing weights are sized '
            f'for {img_size[0]}x{img_size[1]} images), got shape {list(x.shape)}. Resize the input, build the '
            'model with img_size=... (new weights), or pass dynamic_img_size=True to resize the token grids '
            'bicubically as the official code does.')
    return x


torch.fx.wrap('_check_img_size')  # a leaf for fx: shape checks can't be traced


@torch.jit.unused
def _is_fx_tracing() -> bool:
    return torch.fx._symbolic_trace.is_fx_symbolic_tracing()


class CrossScaleEmbed(nn.Module):
    """The cross-scale MLP embedding: strided convolutions of several kernel sizes, summed.

    Equal to the reference's unfold-per-kernel + concatenate + Linear: each convolution's weight is a
    column block of that Linear. NCHW in, NHWC out.
    """

    def __init__(
            self,
            in_chans: int,
            dim: int,
            patch_size: int,
            kernel_sizes: Sequence[int],
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if patch_size != min(kernel_sizes) or kernel_sizes[0] != patch_size:
            raise ValueError(
                f'kernel_sizes {list(kernel_sizes)} must start with the patch size {patch_size}, the smallest')
        self.patch_size = patch_size
        self.kernel_sizes = list(kernel_sizes)
        self.proj = nn.ModuleList([
            nn.Conv2d(in_chans, dim, k, stride=patch_size, padding=(k - patch_size) // 2, bias=i == 0, **dd)
            for i, k in enumerate(kernel_sizes)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last convolutions give NHWC tokens without a copy (a no-op after the first level)
        x = x.contiguous(memory_format=torch.channels_last)
        out = x
        for i, conv in enumerate(self.proj):
            out = conv(x) if i == 0 else out + conv(x)
        return out.permute(0, 2, 3, 1)

    @torch.no_grad()
    def reparameterize(self):
        """The kernels as one convolution (`_merged`), a zoo.layers.ConvAct (weights cast once and prepacked)."""
        if isinstance(self.proj[0], ConvAct):  # already done
            return
        conv = self.proj[0] if len(self.proj) == 1 else self._merged()
        self.proj = nn.ModuleList([ConvAct(conv)])
        self.kernel_sizes = [conv.kernel_size[0]]

    def _merged(self) -> nn.Conv2d:
        """One convolution of the largest kernel, each smaller kernel zero-padded into it."""
        convs = list(self.proj)
        big = max(convs, key=lambda c: c.kernel_size[0])
        k_max, pad_max = big.kernel_size[0], big.padding[0]
        weight = torch.zeros_like(big.weight)
        for conv in convs:
            k, pad = conv.kernel_size[0], conv.padding[0]
            off = pad_max - pad
            weight[:, :, off:off + k, off:off + k] += conv.weight
        merged = nn.Conv2d(
            big.in_channels, big.out_channels, k_max, stride=self.patch_size, padding=pad_max, bias=True,
            device=weight.device, dtype=weight.dtype)
        merged.weight.copy_(weight)
        merged.bias.copy_(convs[0].bias)
        return merged


def _gathered(y: torch.Tensor, shape: Tuple[int, int, int]) -> torch.Tensor:
    """`y` (a permuted view) copied into a contiguous `shape`, in the dtype its matmul runs in: under bf16
    autocast the cast rides on the copy the permutation needs anyway, instead of a second pass in the matmul."""
    if not torch.jit.is_scripting() and y.dtype != torch.bfloat16 and bf16_matmuls(y):
        return torch.empty(y.shape, dtype=torch.bfloat16, device=y.device).copy_(y).view(shape)
    return y.reshape(shape)


torch.fx.wrap('_gathered')  # a leaf for fx: its dtype check can't be traced


class RaftTokenMixing(nn.Module):
    """x + DropPath(MLP(LayerNorm(x))) over one spatial axis, jointly with the channels of each raft.

    x is B x H x W x C with channel c = i * (C / r) + j (raft j, position i in it). The vertical MLP sees,
    for each (j, w), the r * H vector indexed i * H + h; the horizontal one, for each (j, h), the r * W
    vector indexed i * W + w. The LayerNorm is per token over all C channels.
    """

    def __init__(
            self,
            dim: int,
            seq_len: int,
            raft_size: int,
            vertical: bool,
            mlp_ratio: float = 2.,
            proj_drop: float = 0.,
            drop_path: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if dim % raft_size:
            raise ValueError(f'dim {dim} is not a multiple of raft_size {raft_size}')
        self.raft_size = raft_size
        self.vertical = vertical
        features = raft_size * seq_len
        self.norm = nn.LayerNorm(dim, **dd)
        self.mlp = Mlp(features, int(features * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        r = self.raft_size
        n = C // r
        y = self.norm(x).view(B, H, W, r, n)
        if self.vertical:
            y = self.mlp(_gathered(y.permute(0, 4, 2, 3, 1), (B, n * W, r * H)))
            y = y.view(B, n, W, r, H).permute(0, 4, 2, 3, 1)
        else:
            y = self.mlp(_gathered(y.permute(0, 4, 1, 3, 2), (B, n * H, r * W)))
            y = y.view(B, n, H, r, W).permute(0, 2, 4, 3, 1)
        # x first: the sum takes x's (contiguous) layout, so the view back is free
        return (x.view(B, H, W, r, n) + self.drop_path(y)).view(B, H, W, C)


class ChannelMixing(nn.Module):
    """x + DropPath(MLP(LayerNorm(x))) over channels, on B x H x W x C tokens."""

    def __init__(
            self,
            dim: int,
            mlp_ratio: float = 4.,
            proj_drop: float = 0.,
            drop_path: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.norm = nn.LayerNorm(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mlp(self.norm(x)))


class RaftBlock(nn.Module):
    """Vertical raft mixing, horizontal raft mixing, channel mixing (B x H x W x C in and out).

    With `dynamic_img_size`, a grid other than `grid_size` is resized (bicubic) to it for the two token
    mixings and back for the channel mixing, as the reference code does.
    """

    def __init__(
            self,
            dim: int,
            grid_size: Tuple[int, int],
            raft_size: int = 2,
            token_mlp_ratio: float = 2.,
            mlp_ratio: float = 4.,
            proj_drop: float = 0.,
            drop_path: float = 0.,
            dynamic_img_size: bool = False,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.grid_size = grid_size
        self.dynamic_img_size = dynamic_img_size
        self.vertical = RaftTokenMixing(dim, grid_size[0], raft_size, True, token_mlp_ratio, proj_drop, drop_path, **dd)
        self.horizontal = RaftTokenMixing(
            dim, grid_size[1], raft_size, False, token_mlp_ratio, proj_drop, drop_path, **dd)
        self.channel = ChannelMixing(dim, mlp_ratio, proj_drop, drop_path, **dd)

    def _token_mixing(self, x: torch.Tensor) -> torch.Tensor:
        return self.horizontal(self.vertical(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_img_size:
            size = (x.shape[1], x.shape[2])
            y = _resize_nchw(x.permute(0, 3, 1, 2), self.grid_size).permute(0, 2, 3, 1)
            y = self._token_mixing(y.contiguous())
            x = _resize_nchw(y.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1).contiguous()
        else:
            x = self._token_mixing(x)
        return self.channel(x)


class RaftStage(nn.Module):
    """One level: cross-scale embedding, then raft blocks. NCHW in, NCHW out (a view of NHWC memory)."""

    def __init__(
            self,
            in_chans: int,
            dim: int,
            depth: int,
            patch_size: int,
            kernel_sizes: Sequence[int],
            grid_size: Tuple[int, int],
            raft_size: int = 2,
            token_mlp_ratio: float = 2.,
            mlp_ratio: float = 4.,
            proj_drop: float = 0.,
            drop_path: float = 0.,
            dynamic_img_size: bool = False,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.patch_size = patch_size
        self.dynamic_img_size = dynamic_img_size
        self.grad_checkpointing = False
        self.chunk_elems = 400_000  # tokens x channels per inference chunk (about 1.6 MB of fp32 tokens)
        self.downsample = CrossScaleEmbed(in_chans, dim, patch_size, kernel_sizes, **dd)
        self.blocks = nn.Sequential(*[
            RaftBlock(
                dim, grid_size, raft_size, token_mlp_ratio, mlp_ratio, proj_drop, drop_path, dynamic_img_size, **dd)
            for _ in range(depth)
        ])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW -> embedded NHWC tokens."""
        if self.dynamic_img_size:
            p = self.patch_size
            x = _resize_nchw(x, (int(math.ceil(x.shape[-2] / p)) * p, int(math.ceil(x.shape[-1] / p)) * p))
        return self.downsample(x)

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """The blocks on NHWC tokens; outside training, a few images at a time (see `chunk_elems`)."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        if self.training or torch.jit.is_scripting() or _is_fx_tracing():
            return self.blocks(x)
        # Inference: the blocks treat each image on its own, and their hidden activations (2-4x the
        # tokens) stay in cache when a few images go through at a time, not the whole batch.
        chunk = max(1, self.chunk_elems // max(1, x.shape[1] * x.shape[2] * x.shape[3]))
        if x.shape[0] <= chunk:
            return self.blocks(x)
        return torch.cat([self.blocks(xs) for xs in x.split(chunk)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_blocks(self.embed(x)).permute(0, 3, 1, 2)


class RaftMLP(nn.Module):
    """RaftMLP (arXiv:2108.04384), the reference's serial-permuted, cross-scale-embedding variant.

    Args:
        num_classes: Classifier outputs; 0 removes the classifier.
        in_chans: Input channels.
        img_size: Input size the token-mixing weights are sized for (grids img_size / 4, 8, 16, 32, rounded up).
        dims: Channels of the four levels.
        depths: Blocks per level.
        patch_sizes: Stride of each level's embedding.
        embed_kernels: Kernel sizes of each level's cross-scale embedding (the first is the patch size).
        raft_size: Channels per raft (r).
        token_mlp_ratio: Hidden expansion of the token-mixing MLPs.
        mlp_ratio: Hidden expansion of the channel MLPs.
        global_pool: timm pool type.
        drop_rate: Dropout before the classifier.
        proj_drop_rate: Dropout inside the MLPs (the reference's `dropout`).
        drop_path_rate: Stochastic depth, the same rate in every block (as the reference).
        dynamic_img_size: Accept other input sizes by bicubic resizing of the token grids (reference behaviour).
        official_det_features: Feature 0 is the level-0 embedding (before its blocks), as the reference
            detection/segmentation wrappers tap it.
    """

    def __init__(
            self,
            num_classes: int = 1000,
            in_chans: int = 3,
            img_size: Union[int, Tuple[int, int]] = 224,
            dims: Sequence[int] = (64, 128, 256, 512),
            depths: Sequence[int] = (2, 2, 6, 2),
            patch_sizes: Sequence[int] = (4, 2, 2, 2),
            embed_kernels: Sequence[Sequence[int]] = ((4, 8), (2, 4), (2, 4), (2,)),
            raft_size: int = 2,
            token_mlp_ratio: float = 2.,
            mlp_ratio: float = 4.,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            dynamic_img_size: bool = False,
            official_det_features: bool = False,
            output_stride: int = 32,
            device=None,
            dtype=None,
    ):
        super().__init__()
        if output_stride != 32:
            raise ValueError(f'RaftMLP supports output_stride=32 only, got {output_stride}.')
        dd = {'device': device, 'dtype': dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.img_size = to_2tuple(img_size)
        self.dynamic_img_size = dynamic_img_size
        self.official_det_features = official_det_features
        self.raft_size = raft_size
        self.num_features = self.head_hidden_size = dims[-1]
        self.grad_checkpointing = False

        stages = []
        self.feature_info = []
        grid = self.img_size
        stride = 1
        prev = in_chans
        for i, (dim, depth, patch) in enumerate(zip(dims, depths, patch_sizes)):
            # the reference rounds each level's grid up (its inputs are resized up to a multiple of the patch)
            grid = (int(math.ceil(grid[0] / patch)), int(math.ceil(grid[1] / patch)))
            stride *= patch
            stages.append(RaftStage(
                prev, dim, depth, patch, embed_kernels[i], grid, raft_size, token_mlp_ratio, mlp_ratio,
                proj_drop_rate, drop_path_rate, dynamic_img_size, **dd))
            self.feature_info.append(dict(num_chs=dim, reduction=stride, module=f'stages.{i}'))
            prev = dim
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(self.num_features, **dd)
        self.global_pool, self.head_drop, self.head = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^stages\.0\.downsample',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^norm', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def set_input_size(self, img_size: Optional[Union[int, Tuple[int, int]]] = None) -> None:
        """timm's resize API. The token-mixing weights stay sized for the size the model was built at; at
        another size the token grids are resized (bicubic) to theirs and back in every block, as the reference
        code does for other sizes (`dynamic_img_size`); back at the built size, the exact path returns."""
        if img_size is None:
            return
        built = getattr(self, '_built_size', (self.img_size, self.dynamic_img_size))
        self._built_size = built
        self.img_size = set_cfg_input_size(self, img_size)
        dynamic = built[1] or self.img_size != built[0]
        for module in self.modules():
            if hasattr(module, 'dynamic_img_size'):
                module.dynamic_img_size = dynamic

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.head = create_classifier(self.num_features, num_classes, pool_type=global_pool, **dd)
        self.global_pool.train(self.training)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_img_size:
            return x
        return _check_img_size(x, self.img_size)

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward features and return intermediates: the output of each level (strides 4, 8, 16, 32).

        `norm=True` applies the final LayerNorm to the last level's output (the only one it fits).
        `output_fmt` 'NCHW' (maps, stored channels-last) or 'NHWC'.
        """
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"RaftMLP intermediates are 'NCHW' or 'NHWC', got output_fmt='{output_fmt}'.")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = self._check(x)
        last = len(self.stages) - 1
        if torch.jit.is_scripting() or not (stop_early or intermediates_only):
            stages = self.stages
        else:
            stages = self.stages[:max_index + 1]
        for i, stage in enumerate(stages):
            if i == 0 and self.official_det_features:
                y = stage.embed(x)  # NHWC, before the blocks
                if 0 in take_indices:
                    intermediates.append(y.permute(0, 3, 1, 2))
                x = stage.forward_blocks(y).permute(0, 3, 1, 2)
            else:
                x = stage(x)
                if i in take_indices:
                    intermediates.append(self._final_norm(x) if norm and i == last else x)
        if output_fmt == 'NHWC':
            intermediates = [y.permute(0, 2, 3, 1) for y in intermediates]
        if intermediates_only:
            return intermediates
        return self._final_norm(x), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the levels after the last kept feature (and the norm / head)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check(x)
        x = self.stages(x)  # each stage checkpoints its blocks when grad checkpointing is on
        return self._final_norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = self.forward_head(x)
        return x


def _raft_to_natural(t: torch.Tensor, raft_size: int) -> torch.Tensor:
    """Reference token-mixing LayerNorm parameter (index j * r + i) -> natural channel order (i * C/r + j)."""
    return t.reshape(-1, raft_size).t().reshape(-1)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: RaftMLP) -> Dict[str, torch.Tensor]:
    """Convert a checkpoint of the reference code (okojoalg/raft-mlp `RaftMLP`) to ours.

    Bare or wrapped state_dicts (`model`, `state_dict`, ..., `module.` prefixes) are accepted; our own
    files are returned unchanged.
    """
    state_dict = unwrap_state_dict(state_dict)
    if 'stages.0.downsample.proj.0.weight' in state_dict:
        return state_dict
    raft_size = model.raft_size
    sub = {'1': 'vertical', '3': 'horizontal', '5': 'channel'}
    fc = {'0': 'fc1', '3': 'fc2'}
    out = {}
    for key, value in state_dict.items():
        parts = key.split('.')
        if key.startswith('heads.0.1.'):
            out['norm.' + parts[-1]] = value
        elif key.startswith('classifier.'):
            out['head.' + parts[-1]] = value
        elif key.startswith('levels.') and parts[2:5] == ['fn', '0', 'fc']:
            stage = int(parts[1])
            prefix = f'stages.{stage}.downsample.proj.'
            if parts[-1] == 'bias':
                out[prefix + '0.bias'] = value
                continue
            # columns: each kernel's unfolded (channel, ki, kj) features, kernels in order; the
            # checkpoint's own input channels (timm adapts the first convolutions to in_chans after this)
            embed = model.stages[stage].downsample
            area = sum(k * k for k in embed.kernel_sizes)
            if len(embed.proj) != len(embed.kernel_sizes) or value.shape[1] % area:
                raise ValueError(
                    f'{key} {list(value.shape)} does not fit level {stage} of this model (kernels '
                    f'{embed.kernel_sizes}); load official checkpoints before reparameterize_model().')
            in_chans = value.shape[1] // area
            start = 0
            for j, k in enumerate(embed.kernel_sizes):
                n = in_chans * k * k
                out[prefix + f'{j}.weight'] = value[:, start:start + n].reshape(value.shape[0], in_chans, k, k)
                start += n
        elif key.startswith('levels.') and len(parts) >= 7 and parts[2] == 'fn' and parts[4] in sub:
            stage, block = int(parts[1]), int(parts[3]) - 2
            prefix = f'stages.{stage}.blocks.{block}.{sub[parts[4]]}.'
            if parts[5] == 'norm':
                if parts[4] == '5':
                    out[prefix + 'norm.' + parts[-1]] = value
                else:  # norm.1.{weight,bias}, stored in (raft, channel-in-raft) order
                    out[prefix + 'norm.' + parts[-1]] = _raft_to_natural(value, raft_size)
            else:  # fn.{0,3}.{weight,bias}
                out[prefix + 'mlp.' + fc[parts[6]] + '.' + parts[-1]] = value
        else:
            out[key] = value
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> RaftMLP:
    return build_model(
        RaftMLP,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3)),
        **kwargs,
    )


def _cfg(**kwargs):
    return {
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7), 'fixed_input_size': True,
        'crop_pct': 0.875, 'interpolation': 'bilinear', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': ['stages.0.downsample.proj.0', 'stages.0.downsample.proj.1'], 'classifier': 'head',
        'paper_ids': 'arXiv:2108.04384',
        'paper_name': 'RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality?',
        'origin_url': 'https://github.com/okojoalg/raft-mlp', 'license': 'apache-2.0',
        'notes': ('No weights were published by the authors: train the model, or load a checkpoint of the '
                  'official code with checkpoint_path= (converted on load).',),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'raftmlp_s': _cfg(),
    'raftmlp_m': _cfg(),
    'raftmlp_l': _cfg(),
})


@register_model
def raftmlp_s(pretrained: bool = False, **kwargs) -> RaftMLP:
    """RaftMLP-S: 9.9M params, 2.1 GMACs at 224."""
    args = dict(dims=(64, 128, 256, 512), depths=(2, 2, 6, 2))
    return _create('raftmlp_s', pretrained, **dict(args, **kwargs))


@register_model
def raftmlp_m(pretrained: bool = False, **kwargs) -> RaftMLP:
    """RaftMLP-M: 21.4M params, 4.3 GMACs at 224."""
    args = dict(dims=(96, 192, 384, 768), depths=(2, 2, 6, 2))
    return _create('raftmlp_m', pretrained, **dict(args, **kwargs))


@register_model
def raftmlp_l(pretrained: bool = False, **kwargs) -> RaftMLP:
    """RaftMLP-L: 36.2M params, 6.6 GMACs at 224."""
    args = dict(dims=(128, 192, 512, 1024), depths=(2, 2, 6, 2))
    return _create('raftmlp_l', pretrained, **dict(args, **kwargs))
