"""Test configuration: no network, fixed threads, and shared helpers for every family.

The environment is set before huggingface_hub is imported (it reads HF_HUB_OFFLINE at import).
"""
import os

os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['HF_HUB_DISABLE_TELEMETRY'] = '1'
for _var in ('HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'ALL_PROXY', 'all_proxy'):
    os.environ[_var] = 'http://127.0.0.1:9'  # closed local port: any request fails at once
os.environ['NO_PROXY'] = os.environ['no_proxy'] = ''

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)
torch.set_num_interop_threads(1)

import zoo  # noqa: E402,F401  (registers the zoo models)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Every test sees empty, private Hugging Face and torch hub caches."""
    root = tmp_path_factory.mktemp('caches')
    monkeypatch.setenv('HF_HOME', str(root / 'hf'))
    monkeypatch.setenv('HF_HUB_CACHE', str(root / 'hf' / 'hub'))
    monkeypatch.setenv('TORCH_HOME', str(root / 'torch'))
    import huggingface_hub.constants as hf_constants
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(root / 'hf' / 'hub'))
    monkeypatch.setattr(hf_constants, 'HF_HOME', str(root / 'hf'))
    torch.hub.set_dir(str(root / 'torch' / 'hub'))
    yield
