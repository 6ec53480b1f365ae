"""YAML recipes for `detection.engine.TrainConfig`: `_base_` inheritance and `key=value` overrides.

A recipe is a YAML mapping of `TrainConfig` fields. `_base_: other.yaml` (relative to the file) is
loaded first and the file's keys are merged over it, nested mappings key by key. Overrides are
`key=value` strings whose value is read as YAML; dotted keys reach into mappings
(`model_kwargs.backbone_kwargs.window_size=7`). Names without a folder or suffix are looked up among
the packaged recipes in `detection/configs/` and, for text detectors, `detection/text/configs/`
(`zoo detection configs` and `zoo text configs` list them).
"""
import copy
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from zoo.errors import InputError

CONFIG_DIR = Path(__file__).parent / 'configs'
TEXT_CONFIG_DIR = Path(__file__).parent / 'text' / 'configs'

__all__ = ['CONFIG_DIR', 'TEXT_CONFIG_DIR', 'list_configs', 'find_config', 'load_config', 'apply_overrides']


def list_configs(folder: Path = CONFIG_DIR) -> List[str]:
    return sorted(p.stem for p in folder.glob('*.yaml') if not p.name.startswith('_'))


def find_config(name: Union[str, Path]) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    for folder in (CONFIG_DIR, TEXT_CONFIG_DIR):
        packaged = folder / (path.name if path.suffix == '.yaml' else path.name + '.yaml')
        if packaged.is_file():
            return packaged
    known = list_configs() + list_configs(TEXT_CONFIG_DIR)
    raise InputError(f"no config '{name}': give a YAML file or one of {', '.join(known)}")


def _merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(name: Union[str, Path], overrides: Optional[Sequence[str]] = None, _seen=None) -> Dict[str, Any]:
    import yaml

    path = find_config(name).resolve()
    seen = set(_seen or ())
    if path in seen:
        raise InputError(f'config {path} inherits from itself through _base_')
    seen.add(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f'config {path} is not valid YAML: {e}') from e
    if not isinstance(data, dict):
        raise InputError(f'config {path} must be a mapping of settings, not {type(data).__name__}')
    base = data.pop('_base_', None)
    if base:
        data = _merge(load_config(path.parent / base, _seen=seen), data)
    return apply_overrides(data, overrides or ())


def apply_overrides(config: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    import yaml

    out = copy.deepcopy(config)
    for item in overrides:
        if '=' not in item:
            raise InputError(f"override '{item}' is not key=value")
        key, raw = item.split('=', 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        if isinstance(value, str):  # YAML 1.1 reads 6e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        node = out
        parts = key.strip().split('.')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"override '{item}': '{part}' is not a mapping")
        node[parts[-1]] = value
    return out
