"""Where weights come from, and clear errors when they can't be had.

Loading itself is timm's (`build_model_with_cfg` -> `load_pretrained`) and huggingface_hub's, unchanged:
`HF_HUB_OFFLINE`, `HF_HOME`, `TORCH_HOME`, `pretrained_cfg_overlay=dict(file=...)` and
`checkpoint_path=` behave as timm users expect. This module adds what timm leaves to the caller:

* a pre-flight check, so offline mode never lets a `url` source reach the network (torch hub would
  try) and a missing local file is reported before any work;
* one error type, `WeightsError`, whose message names the model tag, the source (Hub repo, URL or
  file) and how to pass a local file instead, for every way a load can fail: offline without a
  cached copy, network unreachable, corrupt or truncated file, a pickle that needs arbitrary code,
  a checkpoint made for another architecture;
* `unwrap_state_dict` for official checkpoints wrapped in `model` / `state_dict` / `ema` dicts or
  saved from DataParallel (`module.`) or `torch.compile` (`_orig_mod.`).
"""
import contextlib
import dataclasses
import hashlib
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Type
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from timm.models import build_model_with_cfg
from timm.models._builder import _resolve_pretrained_source, resolve_pretrained_cfg
from timm.models._pretrained import PretrainedCfg

__all__ = [
    'WeightsError', 'build_model', 'unwrap_state_dict', 'is_offline', 'describe_source',
    'url_cache_path', 'sha256sum',
]

_WRAPPER_KEYS = ('state_dict_ema', 'model_ema', 'ema', 'state_dict', 'model', 'net', 'params')
_PREFIXES = ('module.', '_orig_mod.')


class WeightsError(RuntimeError):
    """Pretrained weights could not be found or used; the message says why and what to do."""


def is_offline() -> bool:
    """Hugging Face offline mode, read at call time (the env var) or as huggingface_hub read it."""
    from huggingface_hub import constants
    env = os.environ.get('HF_HUB_OFFLINE') or os.environ.get('TRANSFORMERS_OFFLINE') or ''
    return constants.HF_HUB_OFFLINE or env.strip().upper() in {'1', 'ON', 'YES', 'TRUE'}


def unwrap_state_dict(checkpoint: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint, whatever training wrapper and key prefix it was saved with."""
    for key in _WRAPPER_KEYS:
        inner = checkpoint.get(key) if isinstance(checkpoint, dict) else None
        if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
            checkpoint = inner
            break
    out = {}
    for key, value in checkpoint.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def sha256sum(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def url_cache_path(url: str, cache_dir=None) -> Path:
    """Where timm / torch hub keep the download of `url`."""
    folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / 'checkpoints'
    return folder / os.path.basename(urlparse(url).path)


def describe_source(cfg: PretrainedCfg) -> Tuple[str, str]:
    """(kind, location) of a pretrained cfg's weights: ('hf-hub', 'org/name'), ('url', URL), ('file', PATH)
    or ('', '') when it has none."""
    load_from, loc = _resolve_pretrained_source(cfg.to_dict())
    if load_from == 'state_dict':
        return 'state_dict', '<in-memory state_dict>'
    if isinstance(loc, (tuple, list)):
        loc = '/'.join(loc)
    return load_from, str(loc or '')


def _tag(variant: str, cfg: PretrainedCfg) -> str:
    return f'{variant}.{cfg.tag}' if cfg.tag else variant


def _how_to_fix(tag: str) -> str:
    return (
        f"To load a local copy, pass it as timm.create_model('{tag}', pretrained=True, "
        "pretrained_cfg_overlay=dict(file='/path/to/checkpoint')) (official files are converted on load), "
        'or use pretrained=False.'
    )


def _preflight(tag: str, cfg: PretrainedCfg, cache_dir=None) -> None:
    kind, loc = describe_source(cfg)
    if not kind:
        raise WeightsError(
            f"'{tag}' has no published weights, so pretrained=True cannot be honoured. "
            f"Train it, or pass your own checkpoint: {_how_to_fix(tag)}")
    if kind == 'file' and not Path(loc).is_file():
        raise WeightsError(f"Weights file for '{tag}' not found: {loc}. Check the path given as `file=`.")
    if kind == 'url' and is_offline() and not url_cache_path(loc, cache_dir).is_file():
        raise WeightsError(
            f"Weights for '{tag}' are not available offline (HF_HUB_OFFLINE=1): source {loc} is not in the "
            f"torch hub cache ({url_cache_path(loc, cache_dir)}). Download it there while online, or "
            f"{_how_to_fix(tag)}")


@contextlib.contextmanager
def _load_errors(tag: str, cfg: PretrainedCfg) -> Iterator[None]:
    """Turn the many ways a weight load fails into one WeightsError that names tag, source and fix."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled
    from safetensors import SafetensorError

    kind, loc = describe_source(cfg)
    source = f'{kind} {loc}' if kind else 'no source'
    try:
        yield
    except WeightsError:
        raise
    except (OfflineModeIsEnabled, EntryNotFoundError) as e:
        # LocalEntryNotFoundError: offline (or unreachable) and not in the Hugging Face cache
        why = 'offline (HF_HUB_OFFLINE=1) and not' if is_offline() else 'not reachable and not'
        raise WeightsError(
            f"Weights for '{tag}' could not be loaded: {source} is {why} in the Hugging Face cache "
            f"({type(e).__name__}). {_how_to_fix(tag)}") from e
    except (URLError, ConnectionError, TimeoutError, HfHubHTTPError) as e:
        raise WeightsError(
            f"Weights for '{tag}' could not be downloaded from {source}: the network is unreachable or "
            f"refused ({type(e).__name__}: {e}). {_how_to_fix(tag)}") from e
    except SafetensorError as e:
        raise WeightsError(
            f"Weights file for '{tag}' ({source}) is corrupt or truncated ({e}). Delete it from the cache "
            "and download it again, or pass a good copy with pretrained_cfg_overlay=dict(file=...).") from e
    except (pickle.UnpicklingError, EOFError) as e:
        raise WeightsError(
            f"Weights file for '{tag}' ({source}) cannot be read as a checkpoint: it is corrupt or truncated "
            f"({type(e).__name__}: {e}). Delete it and download it again.") from e
    except RuntimeError as e:
        msg = str(e)
        if 'weights_only' in msg:
            raise WeightsError(
                f"Weights file for '{tag}' ({source}) is a pickle that needs more than tensors to load, and the "
                "zoo never runs code from a checkpoint. Convert it once, where you trust it, into safetensors "
                "(`zoo weights convert`) and load that file.") from e
        if 'PytorchStreamReader' in msg or 'failed finding central directory' in msg or 'invalid header' in msg:
            raise WeightsError(
                f"Weights file for '{tag}' ({source}) is corrupt or truncated ({msg.splitlines()[0]}). "
                "Delete it and download it again.") from e
        if 'Error(s) in loading state_dict' in msg:
            raise WeightsError(
                f"Checkpoint {source} does not fit '{tag}': {_summarise_mismatch(msg)} Is it a checkpoint "
                f"for another architecture or variant? Pick the matching model name.") from e
        raise


def _summarise_mismatch(msg: str) -> str:
    lines = [line.strip() for line in msg.splitlines()[1:] if line.strip()]
    text = ' '.join(lines)
    return (text[:600] + ' ...') if len(text) > 600 else text


def build_model(
        model_cls: Type[torch.nn.Module],
        variant: str,
        pretrained: bool = False,
        pretrained_filter_fn: Optional[Callable] = None,
        **kwargs,
) -> torch.nn.Module:
    """timm's `build_model_with_cfg`, with the zoo's pre-flight check and clear weight errors."""
    cfg = resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.pop('pretrained_cfg', None),
        pretrained_cfg_overlay=kwargs.pop('pretrained_cfg_overlay', None),
    )
    tag = _tag(variant, cfg)
    if pretrained:
        _preflight(tag, cfg, kwargs.get('cache_dir'))
    # timm reads in_chans from a 3-D (C, H, W) input_size; video cfgs are (C, T, H, W): build with the
    # image view of it, then give the model its full cfg back
    input_size = tuple(cfg.input_size)
    if len(input_size) != 3:
        cfg = dataclasses.replace(cfg, input_size=(input_size[0], *input_size[-2:]))
    with _load_errors(tag, cfg):
        model = build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_cfg=cfg,
            pretrained_filter_fn=pretrained_filter_fn,
            **kwargs,
        )
    if len(input_size) != 3:
        for module in (model, getattr(model, 'model', None)):
            for attr in ('pretrained_cfg', 'default_cfg'):
                if isinstance(getattr(module, attr, None), dict):
                    getattr(module, attr)['input_size'] = input_size
    return model
