"""Helpers for testing a family against the reference fixtures (`../shared/fixtures`).

A fixture holds the official model's outputs on deterministic stand-in weights (see the fixtures'
`synth.py`). `load_fixture(name)` rebuilds those weights in the official naming; a family's
`checkpoint_filter_fn` must turn them into ours, and `relative_error` must stay within
`meta['rtol_max']`.
"""
import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional

import torch

__all__ = ['fixtures_root', 'has_fixture', 'load_fixture', 'relative_error', 'manifest_state_dict']

_DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / 'shared' / 'fixtures'


def fixtures_root() -> Path:
    """`ZOO_FIXTURES` if set, else `../shared/fixtures` beside the project checkout."""
    return Path(os.environ.get('ZOO_FIXTURES') or _DEFAULT_ROOT)


def has_fixture(name: str) -> bool:
    return (fixtures_root() / name / 'meta.json').is_file()


@lru_cache(maxsize=None)
def _synth_module():
    path = fixtures_root() / 'synth.py'
    if not path.is_file():
        raise FileNotFoundError(f'No fixtures at {fixtures_root()} (set ZOO_FIXTURES to the fixtures folder).')
    spec = importlib.util.spec_from_file_location('zoo_fixture_synth', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_fixture(name: str) -> Dict:
    """dict(state_dict=official-named weights, inputs=..., expected=..., meta=...)."""
    return _synth_module().load_fixture(name)


def manifest_state_dict(name: str, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Deterministic weights in the official naming from `manifests/<name>.json` (keys and shapes)."""
    import json
    spec = json.loads((fixtures_root() / 'manifests' / f'{name}.json').read_text())
    synth = _synth_module()
    out = {}
    for key, shape in spec['keys'].items():
        dtype = 'int64' if key.endswith('num_batches_tracked') else 'float32'
        if isinstance(shape, dict):
            shape, dtype = shape['shape'], shape.get('dtype', dtype)
        out[key] = synth.synth_tensor(key, shape, dtype, seed)
    return out


def relative_error(ours: torch.Tensor, expected: torch.Tensor) -> float:
    """max|ours - expected| / max|expected|, the fixtures' pass criterion."""
    ours, expected = ours.detach().double(), expected.detach().double()
    if ours.shape != expected.shape:
        raise AssertionError(f'shape {tuple(ours.shape)} != expected {tuple(expected.shape)}')
    return ((ours - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()


def assert_matches_fixture(name: str, model: torch.nn.Module, filter_fn, forward) -> Dict[str, float]:
    """Check `model` against fixture `name`: exact param count, then every expected output.

    `forward(model, inputs)` returns a dict with the fixture's expected keys. The fixture's weights go
    through `filter_fn` (the family's `checkpoint_filter_fn`) and load strictly.
    """
    fx = load_fixture(name)
    meta = fx['meta']
    n_params = sum(p.numel() for p in model.parameters())
    if n_params != meta['param_count']:
        raise AssertionError(f'{name}: {n_params:,} params, the official model has {meta["param_count"]:,}')
    model.load_state_dict(filter_fn(fx['state_dict'], model), strict=True)
    model.eval()
    with torch.no_grad():
        outputs = forward(model, fx['inputs'])
    rtol = meta.get('rtol_max', 1e-4)
    errors = {key: relative_error(outputs[key], expected) for key, expected in fx['expected'].items()}
    failed = {key: err for key, err in errors.items() if not err <= rtol}
    if failed:
        raise AssertionError(f'{name}: relative error above {rtol:g} for {failed}')
    return errors


def manifest_param_count(name: str) -> int:
    import json
    return json.loads((fixtures_root() / 'manifests' / f'{name}.json').read_text())['param_count']


def make_hf_cache(repo_id: str, files: Dict[str, object], cache_dir=None, revision: str = 'main') -> Path:
    """Lay out a Hugging Face cache entry as huggingface_hub writes it, for offline loading tests.

    `files` maps a file name to a state_dict (written as safetensors), bytes or text. Returns the snapshot
    folder. `cache_dir` defaults to huggingface_hub's current cache (HF_HUB_CACHE).
    """
    import hashlib

    from huggingface_hub import constants
    from safetensors.torch import save

    root = Path(cache_dir or constants.HF_HUB_CACHE) / f'models--{repo_id.replace("/", "--")}'
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = root / 'snapshots' / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / 'refs').mkdir(exist_ok=True)
    (root / 'refs' / revision).write_text(commit)
    for name, content in files.items():
        if isinstance(content, dict):
            content = save({k: v.contiguous() for k, v in content.items()})
        elif isinstance(content, str):
            content = content.encode()
        blob = root / 'blobs' / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(content)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot
