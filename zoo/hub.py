"""Where weights come from, and clear errors when they can't be had.

Loading itself is timm's (`build_model_with_cfg` -> `load_pretrained`) and huggingface_hub's, unchanged:
`HF_HUB_OFFLINE`, `HF_HOME`, `TORCH_HOME`, `pretrained_cfg_overlay=dict(file=...)` and
`checkpoint_path=` behave as timm users expect. This module adds what timm leaves to the caller:

* a pre-flight check, so offline mode never lets a `url` source reach the network (torch hub would
  try) and a missing local file is reported before any work;
* one error type, `WeightsError`, whose message names the model tag, the source (Hub repo, URL or
  file) and how to pass a local file instead, for every way a load can fail: offline without a
  cached copy, network unreachable, corrupt or truncated file, a pickle that needs arbitrary code
  (told apart from a corrupt one by reading its opcodes, never by running it), a checkpoint made for
  another architecture;
* `checkpoint_path=` for zoo models goes through the same route as `pretrained_cfg_overlay=dict(file=...)`:
  an official file is converted by the family's `checkpoint_filter_fn`, and a failure is a
  `WeightsError` naming the file (timm's `create_model` calls `load_checkpoint`; `import zoo` points
  that call at `load_checkpoint` here, which hands every non-zoo model to timm's own, unchanged);
* `unwrap_state_dict` for official checkpoints wrapped in `model` / `state_dict` / `ema` dicts or
  saved from DataParallel (`module.`) or `torch.compile` (`_orig_mod.`).
"""
import contextlib
import dataclasses
import hashlib
import logging
import os
import pickle
import pickletools
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple, Type
from urllib.error import URLError
from urllib.parse import urlparse

import torch
import timm.models._factory as _timm_factory
from timm.models import build_model_with_cfg
from timm.models._builder import _resolve_pretrained_source, resolve_pretrained_cfg
from timm.models._helpers import load_state_dict as _timm_load_state_dict
from timm.models._pretrained import PretrainedCfg

from zoo.errors import InputError, WeightsError

__all__ = [
    'WeightsError', 'build_model', 'load_checkpoint', 'unwrap_state_dict', 'is_offline', 'describe_source',
    'url_cache_path', 'sha256sum', 'pickle_needs_code', 'read_run_checkpoint', 'expected_sha256', 'verify_sha256',
    'set_cfg_input_size', 'RUN_CHECKPOINT', 'MANIFEST', 'load_manifest', 'register_family_module', 'family_filter',
]

_logger = logging.getLogger(__name__)

# the weight hub as data: every published tag's source, sha256 and Hub repo (see zoo.weights)
MANIFEST = Path(__file__).resolve().parents[1] / 'weights' / 'manifest.json'

# the file every training run (`zoo detection train`, `zoo text train`, `zoo train-faces`) writes in its --out folder
RUN_CHECKPOINT = 'last.pt'

_WRAPPER_KEYS = ('state_dict_ema', 'model_ema', 'ema', 'state_dict', 'model', 'net', 'params')
_PREFIXES = ('module.', '_orig_mod.')


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


def _constructor(tag: str) -> str:
    """The call that builds `tag`: timm's for timm-registered models, the zoo's for its own (face parsers)."""
    import timm
    return 'timm.create_model' if timm.is_model(tag.split('.')[0]) else 'zoo.create_model'


def _how_to_fix(tag: str) -> str:
    return (
        f"To load a local copy instead, pass it as {_constructor(tag)}('{tag}', pretrained=True, "
        "pretrained_cfg_overlay=dict(file='/path/to/checkpoint')) (official files are converted on load), "
        'or use pretrained=False.'
    )


def pickle_needs_code(path) -> bool:
    """True when `path` is a well-formed pickle (plain, or torch's zip) that imports code to rebuild its
    objects; False for a corrupt file. Only the opcodes are read (`pickletools`): nothing is unpickled."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith('data.pkl')]
                if not names:
                    return False
                ops = [op.name for op, _, _ in pickletools.genops(archive.read(names[0]))]
        else:
            with open(path, 'rb') as f:
                ops = [op.name for op, _, _ in pickletools.genops(f)]
    except Exception:  # not a pickle: a truncated or corrupt file
        return False
    return bool({'GLOBAL', 'STACK_GLOBAL', 'INST', 'OBJ'} & set(ops)) and ops[-1] == 'STOP'


def _preflight(tag: str, cfg: PretrainedCfg, cache_dir=None) -> None:
    kind, loc = describe_source(cfg)
    if not kind:
        raise WeightsError(
            f"'{tag}' has no published weights, so pretrained=True cannot be honoured.",
            f"Train it, or pass your own checkpoint as {_constructor(tag)}('{tag}', "
            "checkpoint_path='/path/to/checkpoint') (official files are converted on load), or use pretrained=False.")
    if kind == 'file' and not Path(loc).is_file():
        raise WeightsError(f"Weights file for '{tag}' not found: {loc}.", 'Check the path given as `file=`.')
    if kind == 'url' and is_offline() and not url_cache_path(loc, cache_dir).is_file():
        raise WeightsError(
            f"Weights for '{tag}' are not available offline (HF_HUB_OFFLINE=1): source {loc} is not in the "
            f"torch hub cache ({url_cache_path(loc, cache_dir)}). Download it there while online.", _how_to_fix(tag))


@contextlib.contextmanager
def _load_errors(tag: str, source: str, fix: str, path: Optional[Path] = None,
                 classifier: Optional[str] = None) -> Iterator[None]:
    """Turn the many ways a weight load fails into one WeightsError that names the tag, the source (and
    `path`, the file read, where known) and `fix`, the way to load a good copy instead."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled
    from safetensors import SafetensorError

    corrupt = f"Weights file for '{tag}' ({source}) is corrupt or truncated"
    try:
        yield
    except WeightsError:
        raise
    except (OfflineModeIsEnabled, EntryNotFoundError) as e:
        # LocalEntryNotFoundError: offline (or unreachable) and not in the Hugging Face cache
        why = 'offline (HF_HUB_OFFLINE=1) and not' if is_offline() else 'not reachable and not'
        raise WeightsError(
            f"Weights for '{tag}' could not be loaded: {source} is {why} in the Hugging Face cache "
            f"({type(e).__name__}).", fix) from e
    except (URLError, ConnectionError, TimeoutError, HfHubHTTPError) as e:
        raise WeightsError(
            f"Weights for '{tag}' could not be downloaded from {source}: the network is unreachable or "
            f"refused ({type(e).__name__}: {e}).", fix) from e
    except SafetensorError as e:
        raise WeightsError(f'{corrupt} (safetensors: {e}).', fix) from e
    except Exception as e:
        msg = str(e)
        if isinstance(e, RuntimeError) and 'Error(s) in loading state_dict' in msg:
            raise WeightsError(
                f"Checkpoint {source} does not fit '{tag}': {_summarise_mismatch(msg)}",
                _mismatch_fix(msg, classifier)) from e
        if not _raised_reading_a_file(e):
            raise  # not a load failure: a bug
        if _needs_code(e, path):
            raise WeightsError(
                f"Weights file for '{tag}' ({source}) is a pickle that imports code to load, and the zoo never "
                "runs code from a checkpoint.", "Convert it once, where you trust it, into safetensors "
                f"(`zoo weights convert {tag} --checkpoint FILE --out DIR --trust-pickle`) and load that file.") from e
        if not isinstance(e, RuntimeError) or 'weights_only' in msg:  # torch's wording assumes a good pickle
            detail = 'neither safetensors nor a readable torch checkpoint'
        else:
            detail = next((line.strip() for line in msg.splitlines() if line.strip()), type(e).__name__)[:200]
        raise WeightsError(f'{corrupt} ({detail}).', fix) from e


# where a file's bytes are parsed: any exception raised there is about the file (random bytes make the
# weights-only unpickler raise UnpicklingError, IndexError, KeyError, ... depending on what it meets)
_READERS = ('serialization.py', '_weights_only_unpickler.py', 'zipfile', 'pickle.py', 'safetensors')


def _raised_reading_a_file(error: Optional[BaseException]) -> bool:
    """Whether `error`, or the error it was raised from (timm re-raises torch's), came from parsing a file."""
    import traceback
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (pickle.UnpicklingError, EOFError)):
            return True
        if any(any(r in frame.filename for r in _READERS) for frame in traceback.extract_tb(error.__traceback__)):
            return True
        error = error.__cause__ or error.__context__
    return False


def _needs_code(error: BaseException, path: Optional[Path]) -> bool:
    """Whether a failed weights-only load failed because the file is a pickle of code, not a corrupt file."""
    if path is not None and Path(path).is_file():
        return pickle_needs_code(path)
    return 'Unsupported global' in str(error)  # the file is not at hand: torch's own diagnosis


def _mismatch_fix(msg: str, classifier: Optional[str]) -> str:
    """The fix for a state dict that does not fit: another class count, or another model."""
    import re
    if classifier:
        for key, rows in re.findall(r'size mismatch for ([\w.]+): copying a param with shape torch\.Size\(\[(\d+)', msg):
            if key.startswith(classifier + '.') and key.endswith('weight'):
                return f'It was saved with {rows} classes: pass num_classes={rows}.'
    return 'Is it a checkpoint for another architecture or variant? Pick the matching model name.'


def _summarise_mismatch(msg: str) -> str:
    lines = [line.strip() for line in msg.splitlines()[1:] if line.strip()]
    text = ' '.join(lines)
    return (text[:600] + ' ...') if len(text) > 600 else text


def _local_file(kind: str, loc: str, cache_dir=None) -> Optional[Path]:
    """The file a pretrained source reads from, where it is a known local path."""
    if kind == 'file':
        return Path(loc)
    if kind == 'url':
        return url_cache_path(loc, cache_dir)
    return None


def build_model(
        model_cls: Type[torch.nn.Module],
        variant: str,
        pretrained: bool = False,
        pretrained_filter_fn: Optional[Callable] = None,
        **kwargs,
) -> torch.nn.Module:
    """timm's `build_model_with_cfg`, with the zoo's pre-flight check and clear weight errors."""
    bare = kwargs.get('pretrained_cfg') is None and not kwargs.get('pretrained_cfg_overlay')
    cfg = resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.pop('pretrained_cfg', None),
        pretrained_cfg_overlay=kwargs.pop('pretrained_cfg_overlay', None),
    )
    tag = _tag(variant, cfg)
    if pretrained:
        _preflight(tag, cfg, kwargs.get('cache_dir'))
        if bare and cfg.tag:  # a name without a tag loads the first one listed: say which
            _logger.info("'%s' without a tag loads its default weights '%s' (`zoo list` marks the default; name "
                         'another tag to choose)', variant, tag)
    # timm reads in_chans from a 3-D (C, H, W) input_size; video cfgs are (C, T, H, W): build with the
    # image view of it, then give the model its full cfg back
    input_size = tuple(cfg.input_size)
    if len(input_size) != 3:
        cfg = dataclasses.replace(cfg, input_size=(input_size[0], *input_size[-2:]))
    kind, loc = describe_source(cfg)
    local = _local_file(kind, loc, kwargs.get('cache_dir'))
    if pretrained:  # a cached download is checked before it is read, a fresh one right after
        verify_sha256(tag, local, kind)
    with _load_errors(tag, f'{kind} {loc}' if kind else 'no source', _how_to_fix(tag), local, cfg.classifier):
        model = build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_cfg=cfg,
            pretrained_filter_fn=pretrained_filter_fn,
            **kwargs,
        )
    if pretrained:
        verify_sha256(tag, local if kind != 'hf-hub' else _hub_cached_file(loc, kwargs.get('cache_dir')), kind)
    if len(input_size) != 3:
        for module in (model, getattr(model, 'model', None)):
            for attr in ('pretrained_cfg', 'default_cfg'):
                if isinstance(getattr(module, attr, None), dict):
                    getattr(module, attr)['input_size'] = input_size
    return model


def load_manifest(path: Optional[Path] = None) -> Dict[str, Dict]:
    """Tag -> entry (hub_repo, file, sha256, converted_sha256, source_url, license, metric, ...)."""
    import json
    return json.loads(Path(path or MANIFEST).read_text())['tags']


_VERIFIED: Dict[Tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256, so a file is hashed once


def _hub_cached_file(loc: str, cache_dir=None) -> Optional[Path]:
    """The cached file of a Hub source ('org/name' or 'org/name/file'), if it is in the cache."""
    from huggingface_hub import try_to_load_from_cache
    parts = loc.split('/')
    repo, filename = '/'.join(parts[:2]), '/'.join(parts[2:]) or 'model.safetensors'
    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    return Path(found) if isinstance(found, str) else None


def expected_sha256(tag: str, kind: str, path: Optional[Path], manifest: Optional[Path] = None) -> Optional[str]:
    """The sha256 `manifest` (default: the project's) records for the file `tag` loads from a `kind` source:
    `converted_sha256` for our Hub file, `sha256` for the official file (a URL download, or a local copy with
    the official file name)."""
    manifest = Path(manifest or MANIFEST)
    if path is None or not manifest.is_file():
        return None
    entry = load_manifest(manifest).get(tag) or {}
    if kind == 'hf-hub':
        return entry.get('converted_sha256')
    if kind in ('url', 'file') and entry.get('file') == Path(path).name:
        return entry.get('sha256')
    return None


def verify_sha256(tag: str, path: Optional[Path], kind: str) -> None:
    """Check a weights file against the sha256 the manifest records for it (where it records one and the file
    is there); a mismatch is a WeightsError: a corrupt download, or another file under the official name."""
    expected = expected_sha256(tag, kind, path)
    if not expected or path is None or not Path(path).is_file():
        return
    stat = Path(path).stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256sum(path)
    if _VERIFIED[key] != expected:
        raise WeightsError(
            f"Weights file for '{tag}' ({path}) has sha256 {_VERIFIED[key]}, not the {expected} that "
            'weights/manifest.json records for it: a corrupt or altered download, or another file under its name.',
            'Delete it and download it again, or pass your own file under another name.')


def set_cfg_input_size(model: torch.nn.Module, img_size) -> Tuple[int, int]:
    """Record a new default input side (int) or (H, W) in the model's pretrained cfg, as timm's
    `set_input_size` does, so `timm.data.resolve_data_config` and `zoo bench` use it; returns (H, W)."""
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise InputError(f'img_size must be a positive int or (H, W), got {img_size!r}')
    for attr in ('pretrained_cfg', 'default_cfg'):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict) and cfg.get('input_size'):
            cfg['input_size'] = (*cfg['input_size'][:-2], *size)
    return size


def read_run_checkpoint(path, required: Sequence[str] = ('model',), what: str = 'a training checkpoint') -> Dict[str, Any]:
    """A checkpoint a training run wrote (read with `torch.load(weights_only=True)`), or an error naming the
    file: `InputError` when it is missing or not `what` (lacks a `required` key), `WeightsError` when it is
    corrupt, truncated or a pickle of code."""
    path = Path(path)
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob(path.stem + '.*') if p.is_file()) if path.parent.is_dir() else []
        hint = f' (that folder has {", ".join(near)})' if near else ''
        raise InputError(f'checkpoint {path} not found{hint}; give the file a training run wrote')
    fix = f'Give {what} written by the zoo.'
    with _load_errors(str(path), f'file {path}', fix, path):
        state = torch.load(path, map_location='cpu', weights_only=True)
    missing = [k for k in required if not (isinstance(state, dict) and k in state)]
    if missing:
        raise InputError(f'{path} is not {what}: it lacks {missing}. {fix}')
    return state


def family_filter(model: torch.nn.Module) -> Optional[Callable]:
    """The `checkpoint_filter_fn` of the module that defines `model`'s class, if any."""
    return getattr(sys.modules.get(type(model).__module__), 'checkpoint_filter_fn', None)


_FAMILY_MODULES: set = set()  # filled by zoo.models (the zoo's families and the heads' as they load)


def register_family_module(module: str) -> None:
    """Mark `module` as a zoo model family: its models load `checkpoint_path=` through its filter."""
    _FAMILY_MODULES.add(module)


def _is_zoo_model(model: torch.nn.Module) -> bool:
    return type(model).__module__ in _FAMILY_MODULES


def load_checkpoint(model: torch.nn.Module, checkpoint_path, use_ema: bool = True, device='cpu', strict: bool = True,
                    remap: bool = False, filter_fn: Optional[Callable] = None, weights_only: bool = True, **kwargs):
    """timm's `load_checkpoint` (what `create_model(..., checkpoint_path=...)` calls), for zoo models
    through the same route as `pretrained_cfg_overlay=dict(file=...)`: the family's `checkpoint_filter_fn`
    converts an official file (our own files pass through it unchanged), and any failure is a
    `WeightsError` naming the file. Other models go to timm's own function, unchanged."""
    if not _is_zoo_model(model) or remap or str(checkpoint_path).lower().endswith(('.npz', '.npy')):
        return _timm_load_checkpoint(model, checkpoint_path, use_ema=use_ema, device=device, strict=strict,
                                     remap=remap, filter_fn=filter_fn, weights_only=weights_only, **kwargs)
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    tag = cfg.get('architecture') or type(model).__name__
    path = Path(checkpoint_path)
    fix = (f"Pass a checkpoint of '{tag}' (ours, or the official release file: it is converted on load), or "
           'leave checkpoint_path out.')
    if not path.is_file():
        raise WeightsError(f"checkpoint_path for '{tag}' not found: {path}.", fix)
    with _load_errors(tag, f'checkpoint_path {path}', fix, path, cfg.get('classifier')):
        state_dict = _timm_load_state_dict(str(path), use_ema, device=device, weights_only=weights_only)
        filter_fn = filter_fn or family_filter(model)
        if filter_fn is not None:
            state_dict = filter_fn(state_dict, model)
        return model.load_state_dict(state_dict, strict=strict)


_timm_load_checkpoint = _timm_factory.load_checkpoint
_timm_factory.load_checkpoint = load_checkpoint  # create_model(checkpoint_path=...) reads this module global
