import contextlib
import os

import pytest
import torch

# One core per xdist worker: two workers of two threads each on two cores spin against each other (the suite
# took 1.5x as long); run alone, a test keeps torch's default.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _workers:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))


@pytest.fixture(autouse=True, scope="session")
def classifier_cache(tmp_path_factory):
    """Feature classifiers are trained once per test run into a cache shared by the xdist workers
    (the run's base temporary folder), never into the user's ~/.cache."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    os.environ["FOKKER_CACHE"] = str(shared / "fokker-cache")
    yield


@pytest.fixture
def one_thread():
    """Tiny networks gain nothing from a second thread, and lose a lot when the cores are busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@contextlib.contextmanager
def with_untrained_features():
    """One thread, and the FID's feature classifier of the training pictures an untrained FeatureNet (fokker's own
    is trained on first use, slowly): for module-scoped fixtures that train tiny runs."""
    from fokker.metrics import Classifier
    from fokker.metrics.classifier import FeatureNet

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    fake = Classifier(FeatureNet(1, 10).eval(), "digits", 0.1, 179)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("fokker.train.pictures.feature_classifier", lambda dataset: fake)
            yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)
