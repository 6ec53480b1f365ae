"""Markers and small helpers shared by the family tests."""
import pytest

from zoo.testing import fixtures_root, has_fixture


def requires_fixture(name: str):
    return pytest.mark.skipif(
        not has_fixture(name), reason=f'fixture {name} not found under {fixtures_root()} (set ZOO_FIXTURES)')


def requires_manifests():
    return pytest.mark.skipif(
        not (fixtures_root() / 'manifests').is_dir(),
        reason=f'no manifests under {fixtures_root()} (set ZOO_FIXTURES)')


def to_facenet_names(state_dict):
    """Our Inception-ResNet-v1 keys renamed as facenet-pytorch saves them (the official release layout)."""
    renames = (('repeat_2.', 'repeat_3.'), ('repeat_1.', 'repeat_2.'), ('repeat.', 'repeat_1.'), ('classif.', 'logits.'))
    out = {}
    for key, value in state_dict.items():
        for ours, theirs in renames:
            if key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        out[key] = value
    return out


def folder_digest(folder) -> str:
    """sha256 over the names and bytes of every file below `folder`: equal digests, equal trees."""
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob('*')):
        if p.is_file():
            h.update(p.name.encode()), h.update(p.read_bytes())
    return h.hexdigest()


def perturb_norm_stats(model, affine: float = 0.0):
    """BatchNorm statistics (and, with `affine`, every 1-D parameter) moved away from their init, so folding
    them into convolutions is really tested."""
    import torch
    with torch.no_grad():
        for key, buf in model.named_buffers():
            if key.endswith('running_var'):
                buf.uniform_(0.5, 1.5)
            elif key.endswith('running_mean'):
                buf.normal_(0, 0.1)
        if affine:
            for p in model.parameters():
                if p.dim() == 1:
                    p.add_(torch.randn_like(p) * affine)
    return model
