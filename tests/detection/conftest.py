"""Detection tests run single-threaded: on a shared, oversubscribed CPU, two intra-op threads make the
small detection graphs tens of times slower (spin-waiting), one thread does not."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
