"""The weight hub as data: the manifest of published tags, conversion to timm's Hub layout, upload.

`zoo weights convert MODEL --checkpoint FILE --out DIR` loads an official (or any) checkpoint through
the family's `checkpoint_filter_fn` and writes `model.safetensors`, `config.json` (timm's layout, so
`timm.create_model('local-dir:DIR')` and `hf-hub:ORG/NAME` load it) and a `README.md` model card.
`zoo weights push DIR --repo ORG/NAME` uploads such a folder with huggingface_hub.

Checkpoints that are pickles of code (not just tensors), such as EDM's / LEGO's `.pkl` files, are refused:
unpickling them runs whatever code they carry. `--trust-pickle` (`convert(..., trust_pickle=True)`) unpickles
one anyway, in this process, for a file you trust; `--code-path DIR` puts the code it needs (e.g. the
official repository with `dnnlib` and `torch_utils`) on the import path for that load only.
"""
import json
import string
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from timm.models._hub import save_for_hf

from zoo import hub
from zoo.hub import WeightsError, load_manifest, pickle_needs_code, sha256sum, unwrap_state_dict

WEIGHTS_DIR = hub.MANIFEST.parent
CARD_TEMPLATE = WEIGHTS_DIR / 'card_template.md'
CONVERTED_FILES = ('model.safetensors', 'config.json', 'README.md')

__all__ = ['load_manifest', 'pretrained_tags', 'convert', 'record_sha256', 'load_trusted_pickle', 'push', 'render_card']


def pretrained_tags(models: List[str]) -> List[str]:
    """Every `model.tag` with a weight source among `models`."""
    from zoo.hub import describe_source
    from zoo.models import get_pretrained_cfg, list_pretrained
    tags = []
    for name in models:
        for full in list_pretrained(name + '.*'):
            if describe_source(get_pretrained_cfg(full))[0]:
                tags.append(full)
    return tags


def render_card(tag: str, model, sha256: str, entry: Optional[Dict] = None) -> str:
    cfg = model.pretrained_cfg
    entry = entry or {}
    metric = entry.get('metric')
    values = dict(
        tag=tag,
        description=' '.join(cfg.get('notes') or ()) or f'{cfg.get("architecture", tag)} weights.',
        architecture=cfg.get('architecture', tag.split('.')[0]),
        params_m=f'{sum(p.numel() for p in model.parameters()) / 1e6:.2f}',
        input_size='x'.join(str(s) for s in cfg.get('input_size', ())),
        paper=cfg.get('paper_ids') or entry.get('paper', ''),
        origin_url=cfg.get('origin_url', ''),
        source_url=entry.get('source_url') or cfg.get('url') or cfg.get('hf_hub_id') or 'local checkpoint',
        license=entry.get('license') or cfg.get('license') or 'other',
        data_terms=f'; {entry["data_terms"]}' if entry.get('data_terms') else '',
        metric=(f'{metric["name"]}: {metric["value"]} ({metric.get("source", "reported")})' if metric
                else 'None reported.'),
        sha256=sha256,
    )
    return string.Template(CARD_TEMPLATE.read_text()).substitute(values)


PICKLE_RISK = (
    "{checkpoint} is a pickle that carries code, not just tensors: loading it runs that code with your "
    "permissions (it can do anything your account can). The zoo does not load such files by default. If you "
    "trust the file and where it came from, convert it once with `zoo weights convert {tag} --checkpoint "
    "{checkpoint} --out DIR --trust-pickle` (add `--code-path DIR` for the modules it imports, e.g. the official "
    "repository's `dnnlib` and `torch_utils` for EDM / LEGO pickles), ideally in an isolated environment, and "
    "load the safetensors it writes.")


def load_trusted_pickle(checkpoint: Path, code_path: Sequence = ()) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint that needs code to unpickle. THIS RUNS THE CODE IN THE FILE: trusted files only.

    Takes the module (or its state_dict) under 'ema' / 'model' / 'state_dict' / 'net', a pickled module, or a
    dict of tensors. `code_path` folders are on the import path during the load only.
    """
    import pickle
    import sys
    import zipfile
    added = [str(Path(p).resolve()) for p in code_path]
    sys.path[:0] = added
    try:
        if zipfile.is_zipfile(checkpoint):
            obj = torch.load(checkpoint, map_location='cpu', weights_only=False)
        else:
            with open(checkpoint, 'rb') as f:
                obj = pickle.load(f)  # noqa: S301 -- the caller trusts this file (--trust-pickle)
    except ModuleNotFoundError as e:
        raise WeightsError(
            f'{checkpoint} needs the module `{e.name}` of the code it was saved with (EDM / LEGO pickles need '
            '`dnnlib` and `torch_utils` from the official repository): pass that folder with --code-path.') from e
    finally:
        for p in added:
            sys.path.remove(p)
    for key in ('ema', 'model', 'state_dict', 'net'):
        if isinstance(obj, dict) and isinstance(obj.get(key), torch.nn.Module):
            obj = obj[key]
            break
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    state_dict = unwrap_state_dict(obj) if isinstance(obj, dict) else {}
    tensors = {k: v.detach().cpu() for k, v in state_dict.items() if torch.is_tensor(v)}
    if not tensors:
        raise WeightsError(f'{checkpoint} unpickled, but holds no module or tensors to convert.')
    return tensors


def _load_into(tag: str, state_dict: Dict[str, torch.Tensor]):
    """`tag`'s model with `state_dict` loaded strictly through its family's checkpoint_filter_fn."""
    from zoo.models import create_model
    model = create_model(tag)
    filter_fn = hub.family_filter(model)
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    with hub._load_errors(tag, 'unpickled with trust_pickle', '', classifier=model.pretrained_cfg.get('classifier')):
        model.load_state_dict(state_dict, strict=True)
    return model


def convert(tag: str, checkpoint: Path, out: Path, trust_pickle: bool = False, code_path: Sequence = (),
            manifest: Optional[Path] = None) -> str:
    """Write timm's Hub layout for `tag` from `checkpoint`; return the sha256 of model.safetensors.

    A checkpoint that needs code to load is refused unless `trust_pickle` (see `load_trusted_pickle`). With
    `manifest`, converting the official file (the entry's `file` name) records its sha256 and the converted
    file's there; an official file whose sha256 differs from the one recorded is refused before any output.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise WeightsError(f'Checkpoint not found: {checkpoint}.', 'Give the path of the official file with --checkpoint.')
    source_digest = sha256sum(checkpoint) if manifest else None  # read only to be checked and recorded
    expected = hub.expected_sha256(tag, 'file', checkpoint, manifest) if manifest else None
    if expected and expected != source_digest:
        raise WeightsError(
            f"{checkpoint} has sha256 {source_digest}, not the {expected} that {manifest} records for '{tag}'s "
            'official file.', 'Use the published file, or convert your own under another file name.')
    if trust_pickle:
        model = _load_into(tag, load_trusted_pickle(checkpoint, code_path))
    else:
        try:
            from zoo.models import create_model
            model = create_model(tag, pretrained=True, pretrained_cfg_overlay=dict(file=str(checkpoint)))
        except WeightsError as e:
            if pickle_needs_code(checkpoint):
                raise WeightsError(PICKLE_RISK.format(checkpoint=checkpoint, tag=tag)) from e
            raise
    out.mkdir(parents=True, exist_ok=True)
    save_for_hf(model, str(out), safe_serialization=True)
    digest = sha256sum(out / 'model.safetensors')
    entry = load_manifest(manifest).get(tag) if (manifest or hub.MANIFEST).is_file() else None
    (out / 'README.md').write_text(render_card(tag, model, digest, entry))
    if manifest and entry and entry.get('file') == checkpoint.name:
        record_sha256(tag, source_digest, digest, manifest)
    return digest


def record_sha256(tag: str, source_sha256: str, converted_sha256: str, manifest: Optional[Path] = None) -> None:
    """Write the official file's and the converted file's sha256 into `tag`'s manifest entry (atomically)."""
    import os
    manifest = Path(manifest or hub.MANIFEST)
    data = json.loads(manifest.read_text())
    data['tags'][tag].update(sha256=source_sha256, converted_sha256=converted_sha256)
    tmp = manifest.with_name(manifest.name + '.tmp')
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + '\n')
    os.replace(tmp, manifest)


def push(folder: Path, repo: str, dry_run: bool = False, private: bool = False,
         commit_message: str = 'Add converted weights') -> List[str]:
    """Upload a converted folder to the Hub (`dry_run`: only check it and say what would go)."""
    folder = Path(folder)
    missing = [f for f in CONVERTED_FILES if not (folder / f).is_file()]
    if missing:
        raise WeightsError(f'{folder} is not a converted weights folder: missing {missing}. Run `zoo weights convert`.')
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    if dry_run:
        return files
    from huggingface_hub import HfApi
    api = HfApi()
    api.create_repo(repo, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=commit_message)
    return files
