"""NiNformer: a network-in-network transformer whose token mixing is an MLP-Mixer-generated gate.

Paper: "NiNformer: A Network in Network Transformer with Token Mixing Generated Gating Function",
A. N. Abdullah, T. Aydin (arXiv:2403.02411; Neural Computing & Applications, 2025).

Reference code: Abdullah-88/NiNformer (BSD-3-Clause, commit 0ec85d46): `ninformer.py` (the blocks) and
the image classifier defined in `train.py` (lines 46-88). Its one configuration (CIFAR-10: 32x32,
patch 4, width 256, hidden 512, 4 blocks, dropout 0.5) is `ninformer_cifar10`; `ninformer_cifar100` and
`ninformer_mnist` (28x28 grey, 49 tokens) are the paper's other two benchmarks built the same way
(the reference code does not ship them). No weights were published: every model here has to be
trained (`zoo list` says "no published weights"); `checkpoint_filter_fn` converts checkpoints saved by
the reference code (bare or wrapped state_dict) to ours.

The architecture, as the reference code computes it:
  * Patch embedding: a stride-p convolution; tokens in row-major order; no position embedding, no class
    token.
  * Each block has ONE LayerNorm, used twice:
        x = x + proj(n) * Mixer(n),  n = LN(x)      (the "mixer gating unit")
        x = x + FFN(LN(x))
    where Mixer is a whole MLP-Mixer block with its own two LayerNorms and both residuals:
        t = n + TokenMLP(LN_t(n)) (Linear seq_len -> hidden over the token axis, GELU, Linear back),
        Mixer(n) = t + ChannelMLP(LN_c(t)).
    The gate multiplies by the Mixer output including its input residual.
  * Mean over tokens, Linear classifier; no final norm. GELU is exact, LayerNorm eps 1e-5, and every
    MLP has dropout after its activation and after its output (0.5 in the reference).

Differences from the reference code (none change its numbers beyond float rounding, ~1e-7):
  * The token MLP multiplies its weights from the left on the B x N x C tokens instead of transposing
    them twice (einops `Rearrange`) around an `nn.Linear`, and outside training runs two images at a
    time in fp32 (bf16: the whole batch, its calls being dearer), so its hidden activations (hidden x C
    per image, 8x the tokens) stay in cache for the GELU and the second product: 2x faster for that MLP
    at batch 32 on CPU with glibc's default allocator (with freed memory kept for reuse,
    `zoo.bench.keep_freed_memory`, the whole batch at once is some 20 % faster). The gate and its residual
    are one `addcmul`; Dropout calls are skipped outside training.
  * The reference checks the input size only through the shape of its token-mixing weights; here a
    different size is a clear ValueError (`fixed_input_size` in the cfg): seq_len = (img_size / patch)^2
    is fixed when the model is built, so another size needs `img_size=...` and new weights.
  * timm extras the reference lacks: `drop_path_rate` (stochastic depth on the two block residuals,
    linear in depth, 0 by default), classifier dropout `drop_rate`, other pools via `global_pool`.
    `proj_drop_rate` is the reference's `dropout` (0.5, as it trains).
  * `forward_features` returns the token map as B x C x H' x W' (stored channels-last);
    `forward_intermediates` returns each block's output as NCHW maps or NLC tokens (`output_fmt`).
    The model is isotropic (every block at stride = patch size) and has no final norm, so `norm=True`
    changes nothing.
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, PatchEmbed, create_classifier, get_device_dtype, to_2tuple
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint, checkpoint_seq

from zoo.hub import build_model, unwrap_state_dict
from zoo.layers import Linear, LinearAct, Mlp as FusableMlp
from zoo.precision import bf16_matmuls

__all__ = ['NiNformer']


def _check_img_size(x: torch.Tensor, img_size: Tuple[int, int]) -> torch.Tensor:
    if x.dim() != 4 or x.shape[-2] != img_size[0] or x.shape[-1] != img_size[1]:
        raise ValueError(
            f'NiNformer expects B x C x {img_size[0]} x {img_size[1]} inputs (its token-mixing weights are sized '
            f'for that many tokens), got shape {list(x.shape)}. Resize the input, or build the model with '
            'img_size=... (new weights).')
    return x


torch.fx.wrap('_check_img_size')  # a leaf for fx: shape checks can't be traced


def _token_mix(shortcut: torch.Tensor, x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
               b2: torch.Tensor, chunk: int) -> torch.Tensor:
    """shortcut + W2 @ GELU(W1 @ x + b1) + b2 on B x N x C tokens (mixing along N), `chunk` images at a time.

    Weights multiply from the left, so the tokens are never transposed. The hidden activations
    (hidden x C per image, 8x the tokens) stay in cache for the GELU and the second product when
    computed a few images at a time, instead of a round trip to memory for the whole batch (fp32; bf16 runs
    the whole batch at once).
    """
    if not torch.jit.is_scripting() and bf16_matmuls(x):
        # bf16 batched GEMMs of a few images run far below the matrix units' rate: the whole batch at once (4.2
        # against 7.2 ms for chunks of 2 at batch 32)
        chunk = x.shape[0]
    outs: List[torch.Tensor] = []
    for s, xs in zip(shortcut.split(chunk), x.split(chunk)):
        n, c = xs.shape[0], xs.shape[-1]
        h = F.gelu(torch.baddbmm(b1.unsqueeze(-1).expand(n, -1, c), w1.expand(n, -1, -1), xs))
        outs.append(torch.baddbmm(s, w2.expand(n, -1, -1), h).add_(b2.unsqueeze(-1)))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


torch.fx.wrap('_token_mix')  # a leaf for fx: the loop over chunks depends on the batch size


class TokenMlp(Mlp):
    """timm's Mlp along the token axis of B x N x C tokens (N in and out, C untouched).

    The weights multiply from the left, so the tokens are never transposed; `mix(shortcut, x)` adds the
    residual and, outside training, runs a few images at a time (see `_token_mix`). The inference form
    (`fuse()`) runs bf16 calls as two prepacked matmuls over the transposed tokens, the GELU inside the first
    (zoo.layers.LinearAct): a batched bf16 GEMM runs below the matrix units' rate and autocast would copy the
    broadcast bias to the whole hidden map (NiNformer-C10, bf16: 25.1 -> 21.7 ms at batch 32, 3.7 -> 3.2 ms at
    batch 1); fp32 keeps the left products, the faster form there (58 against 66 ms at batch 32).
    """

    def __init__(self, *args, chunk: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunk = chunk  # images per inference chunk

    def _weights(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if torch.jit.is_scripting():
            return self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias
        return self._weights_of_either_form()

    @torch.jit.unused
    def _weights_of_either_form(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        fc1, fc2 = self.fc1, self.fc2
        if isinstance(fc1, LinearAct):
            fc1, fc2 = fc1.linear, fc2.linear
        return fc1.weight, fc1.bias, fc2.weight, fc2.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        w1, b1, w2, b2 = self._weights()
        x = torch.bmm(w1.expand(n, -1, -1), x).add_(b1.unsqueeze(-1))
        x = self.act(x)
        x = self.drop1(x)
        x = self.norm(x)
        x = torch.bmm(w2.expand(n, -1, -1), x).add_(b2.unsqueeze(-1))
        x = self.drop2(x)
        return x

    def mix(self, shortcut: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """shortcut + self(x)."""
        if self.training:
            return shortcut + self.forward(x)
        if not torch.jit.is_scripting() and self._transposed_matmuls(x):
            return shortcut + self.fc2(self.fc1(x.transpose(1, 2))).transpose(1, 2)
        w1, b1, w2, b2 = self._weights()
        return _token_mix(shortcut, x, w1, b1, w2, b2, self.chunk)

    @torch.jit.unused
    def _transposed_matmuls(self, x: torch.Tensor) -> bool:
        return isinstance(self.fc1, LinearAct) and bf16_matmuls(x)

    def fuse(self) -> nn.Module:
        if not isinstance(self.fc1, LinearAct):
            self.fc1, self.fc2 = LinearAct(self.fc1, self.act), LinearAct(self.fc2)
        return self


class FastMlp(FusableMlp):
    """timm's Mlp (Linear, GELU, Dropout, Linear, Dropout) without its no-op calls outside training; its inference
    form (`fuse()`) has the GELU inside fc1's matmul and both weights cast once and prepacked (zoo.layers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = self.drop1(self.act(self.fc1(x)))
            return self.drop2(self.fc2(self.norm(x)))
        return self.fc2(self.act(self.fc1(x)))


class MixerBlock(nn.Module):
    """A complete MLP-Mixer block: t = x + TokenMLP(LN(x)); out = t + ChannelMLP(LN(t)). Names as timm's."""

    def __init__(
            self,
            dim: int,
            seq_len: int,
            hidden_dim: int,
            proj_drop: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.norm1 = nn.LayerNorm(dim, **dd)
        self.mlp_tokens = TokenMlp(seq_len, hidden_dim, act_layer=nn.GELU, drop=proj_drop, **dd)
        self.norm2 = nn.LayerNorm(dim, **dd)
        self.mlp_channels = FastMlp(dim, hidden_dim, act_layer=nn.GELU, drop=proj_drop, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp_tokens.mix(x, self.norm1(x))
        x = x + self.mlp_channels(self.norm2(x))
        return x


class MixerGatingUnit(nn.Module):
    """proj(x) * MixerBlock(x): the Mixer output, residual included, gates a linear projection."""

    def __init__(
            self,
            dim: int,
            seq_len: int,
            hidden_dim: int,
            proj_drop: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.mixer = MixerBlock(dim, seq_len, hidden_dim, proj_drop, **dd)
        self.proj = Linear(dim, dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * self.mixer(x)


class NiNBlock(nn.Module):
    """x += gate(LN(x)); x += FFN(LN(x)) with the same LayerNorm both times (as the reference), on the tokens
    of a B x C x H x W map."""

    def __init__(
            self,
            dim: int,
            seq_len: int,
            hidden_dim: int,
            proj_drop: float = 0.,
            drop_path: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.norm = nn.LayerNorm(dim, **dd)
        self.gate = MixerGatingUnit(dim, seq_len, hidden_dim, proj_drop, **dd)
        self.mlp = FastMlp(dim, hidden_dim, act_layer=nn.GELU, drop=proj_drop, **dd)
        self.use_drop_path = drop_path > 0.
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x C x H x W in and out, as a view of row-major B x N x C tokens (no copy either way), so the
        block outputs are feature maps for every feature extractor, fx's included."""
        shape = x.shape
        x = x.flatten(2).transpose(1, 2)
        y = self.norm(x)
        if self.use_drop_path and self.training:
            x = x + self.drop_path(self.gate(y))
        else:  # x + proj(y) * mixer(y) as one op
            x = torch.addcmul(x, self.gate.proj(y), self.gate.mixer(y))
        x = x + self.drop_path(self.mlp(self.norm(x)))
        return x.transpose(1, 2).reshape(shape)


class NiNformer(nn.Module):
    """NiNformer image classifier (arXiv:2403.02411).

    Args:
        img_size: Input size; fixes the number of tokens the token-mixing MLPs are built for.
        patch_size: Patch (and stride) of the patch embedding.
        in_chans: Input channels.
        num_classes: Classifier outputs; 0 removes the classifier.
        global_pool: timm pool type over the token map ('avg' = the reference's token mean).
        embed_dim: Token width (the reference's d_model).
        hidden_dim: Hidden width of every MLP, token and channel (the reference's d_ffn).
        depth: Number of blocks.
        drop_rate: Dropout before the classifier (none in the reference).
        proj_drop_rate: Dropout inside every MLP (the reference's `dropout`).
        drop_path_rate: Stochastic depth on the block residuals, linear in depth (none in the reference).
    """

    def __init__(
            self,
            img_size: Union[int, Tuple[int, int]] = 32,
            patch_size: int = 4,
            in_chans: int = 3,
            num_classes: int = 10,
            global_pool: str = 'avg',
            embed_dim: int = 256,
            hidden_dim: int = 512,
            depth: int = 4,
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.img_size = to_2tuple(img_size)
        if self.img_size[0] % patch_size or self.img_size[1] % patch_size:
            raise ValueError(f'img_size {self.img_size} must be a multiple of patch_size {patch_size}')
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(
            self.img_size, patch_size, in_chans, embed_dim, flatten=True, strict_img_size=False, **dd)
        seq_len = self.grid_size[0] * self.grid_size[1]
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth, device='cpu')]
        self.blocks = nn.Sequential(*[
            NiNBlock(embed_dim, seq_len, hidden_dim, proj_drop_rate, dpr[i], **dd) for i in range(depth)
        ])
        self.feature_info = [
            dict(num_chs=embed_dim, reduction=patch_size, module=f'blocks.{i}') for i in range(depth)]
        self.global_pool, self.head_drop, self.head = create_classifier(
            embed_dim, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(stem=r'^patch_embed', blocks=[(r'^blocks\.(\d+)', None)])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.head = create_classifier(self.embed_dim, num_classes, pool_type=global_pool, **dd)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_img_size(x, self.img_size)
        # a channels-last convolution makes the flattened B x N x C tokens contiguous (row-major tokens)
        return self.patch_embed(x.contiguous(memory_format=torch.channels_last))

    def _to_nchw(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.grid_size[0], self.grid_size[1])

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward features and return the output of blocks `indices`, all at stride patch_size.

        `output_fmt`: 'NCHW' (B x C x H' x W' maps, stored channels-last) or 'NLC' (B x N x C tokens,
        row-major). There is no final norm, so `norm` has no effect. The final features are NCHW.
        """
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f"NiNformer intermediates are 'NCHW' or 'NLC', got output_fmt='{output_fmt}'.")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        x = self._to_nchw(self._embed(x))
        if torch.jit.is_scripting() or not (stop_early or intermediates_only):
            blocks = self.blocks
        else:
            blocks = self.blocks[:max_index + 1]
        for i, blk in enumerate(blocks):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(blk, x)
            else:
                x = blk(x)
            if i in take_indices:
                intermediates.append(x if output_fmt == 'NCHW' else x.flatten(2).transpose(1, 2))
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the blocks after the last kept one (and the head)."""
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._to_nchw(self._embed(x))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = self.forward_head(x)
        return x


_RENAMES = (
    ('patcher.', 'patch_embed.proj.'),
    ('classifier.', 'head.'),
    ('mgu.Mixer.token_mix.0.', 'gate.mixer.norm1.'),
    ('mgu.Mixer.token_mix.2.net.0.', 'gate.mixer.mlp_tokens.fc1.'),
    ('mgu.Mixer.token_mix.2.net.3.', 'gate.mixer.mlp_tokens.fc2.'),
    ('mgu.Mixer.channel_mix.0.', 'gate.mixer.norm2.'),
    ('mgu.Mixer.channel_mix.1.net.0.', 'gate.mixer.mlp_channels.fc1.'),
    ('mgu.Mixer.channel_mix.1.net.3.', 'gate.mixer.mlp_channels.fc2.'),
    ('mgu.proj.', 'gate.proj.'),
    ('ffn.net.0.', 'mlp.fc1.'),
    ('ffn.net.3.', 'mlp.fc2.'),
)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: NiNformer) -> Dict[str, torch.Tensor]:
    """Convert a checkpoint of the reference code (`NiNformerImageClassification` of Abdullah-88/NiNformer).

    Bare or wrapped state_dicts (`model`, `state_dict`, ..., `module.` prefixes) are accepted; our own
    files are returned unchanged.
    """
    state_dict = unwrap_state_dict(state_dict)
    if 'patch_embed.proj.weight' in state_dict:
        return state_dict
    out = {}
    for key, value in state_dict.items():
        if key.startswith('model.'):
            key = 'blocks.' + key[len('model.'):]
        for old, new in _RENAMES:
            if old in key:
                key = key.replace(old, new)
                break
        out[key] = value
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> NiNformer:
    # features_only takes every block by default (an int n = the last n blocks, as feature_take_indices reads it)
    out_indices = kwargs.pop('out_indices', kwargs.get('depth', 4))
    return build_model(
        NiNformer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=out_indices),
        **kwargs,
    )


def _cfg(**kwargs):
    return {
        'num_classes': 10, 'input_size': (3, 32, 32), 'pool_size': (8, 8), 'fixed_input_size': True,
        'crop_pct': 1.0, 'interpolation': 'bilinear', 'mean': (0.5, 0.5, 0.5), 'std': (0.5, 0.5, 0.5),
        'first_conv': 'patch_embed.proj', 'classifier': 'head',
        'paper_ids': 'arXiv:2403.02411',
        'paper_name': 'NiNformer: A Network in Network Transformer with Token Mixing Generated Gating Function',
        'origin_url': 'https://github.com/Abdullah-88/NiNformer', 'license': 'bsd-3-clause',
        **kwargs,
    }


_NO_WEIGHTS = 'No weights were published by the authors: train the model (or load your own with checkpoint_path=).'

default_cfgs = generate_default_cfgs({
    'ninformer_cifar10': _cfg(notes=('CIFAR-10 configuration of the official train.py. ' + _NO_WEIGHTS,)),
    'ninformer_cifar100': _cfg(
        num_classes=100, notes=('CIFAR-100: the official configuration with 100 classes. ' + _NO_WEIGHTS,)),
    'ninformer_mnist': _cfg(
        input_size=(1, 28, 28), pool_size=(7, 7), mean=(0.5,), std=(0.5,),
        notes=('MNIST: the official configuration on 28x28 grey images (49 tokens). ' + _NO_WEIGHTS,)),
})


@register_model
def ninformer_cifar10(pretrained: bool = False, **kwargs) -> NiNformer:
    """NiNformer for CIFAR-10 (the official configuration): 32x32, patch 4, 256 wide, 4 blocks, 2.65M params."""
    args = dict(img_size=32, patch_size=4, num_classes=10, embed_dim=256, hidden_dim=512, depth=4, proj_drop_rate=0.5)
    return _create('ninformer_cifar10', pretrained, **dict(args, **kwargs))


@register_model
def ninformer_cifar100(pretrained: bool = False, **kwargs) -> NiNformer:
    """NiNformer for CIFAR-100: the CIFAR-10 configuration with 100 classes, 2.68M params."""
    args = dict(img_size=32, patch_size=4, num_classes=100, embed_dim=256, hidden_dim=512, depth=4, proj_drop_rate=0.5)
    return _create('ninformer_cifar100', pretrained, **dict(args, **kwargs))


@register_model
def ninformer_mnist(pretrained: bool = False, **kwargs) -> NiNformer:
    """NiNformer for MNIST: 28x28 grey images, patch 4 (49 tokens), 2.58M params."""
    args = dict(
        img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=256, hidden_dim=512, depth=4,
        proj_drop_rate=0.5)
    return _create('ninformer_mnist', pretrained, **dict(args, **kwargs))
