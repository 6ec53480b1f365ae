"""The weight hub as data: the manifest of published tags, conversion to timm's Hub layout, upload.

`zoo weights convert MODEL --checkpoint FILE --out DIR` loads an official (or any) checkpoint through
the family's `checkpoint_filter_fn` and writes `model.safetensors`, `config.json` (timm's layout, so
`timm.create_model('local-dir:DIR')` and `hf-hub:ORG/NAME` load it) and a `README.md` model card.
`zoo weights push DIR --repo ORG/NAME` uploads such a folder with huggingface_hub.
"""
import json
import string
from pathlib import Path
from typing import Dict, List, Optional

import timm
from timm.models._hub import save_for_hf

from zoo.hub import WeightsError, sha256sum

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / 'weights'
MANIFEST = WEIGHTS_DIR / 'manifest.json'
CARD_TEMPLATE = WEIGHTS_DIR / 'card_template.md'
CONVERTED_FILES = ('model.safetensors', 'config.json', 'README.md')

__all__ = ['load_manifest', 'pretrained_tags', 'convert', 'push', 'render_card']


def load_manifest(path: Path = MANIFEST) -> Dict[str, Dict]:
    """Tag -> entry (hub_repo, file, sha256, source_url, license, metric, ...)."""
    return json.loads(Path(path).read_text())['tags']


def pretrained_tags(models: List[str]) -> List[str]:
    """Every `model.tag` with a weight source among `models`."""
    from zoo.hub import describe_source
    from timm.models import get_pretrained_cfg
    tags = []
    for name in models:
        for full in timm.list_pretrained(name + '.*'):
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


def convert(tag: str, checkpoint: Path, out: Path) -> str:
    """Write timm's Hub layout for `tag` from `checkpoint`; return the sha256 of model.safetensors."""
    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise WeightsError(f'Checkpoint not found: {checkpoint}')
    model = timm.create_model(tag, pretrained=True, pretrained_cfg_overlay=dict(file=str(checkpoint)))
    out.mkdir(parents=True, exist_ok=True)
    save_for_hf(model, str(out), safe_serialization=True)
    digest = sha256sum(out / 'model.safetensors')
    entry = load_manifest().get(tag) if MANIFEST.is_file() else None
    (out / 'README.md').write_text(render_card(tag, model, digest, entry))
    return digest


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
