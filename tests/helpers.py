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
