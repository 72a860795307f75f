import numpy as np
import pytest
import torch

from unet_course import Budget, best_device, get_budget, seed_everything


def test_env_var_overrides(monkeypatch):
    for name in ("smoke", "cpu", "gpu"):
        monkeypatch.setenv("UNET_COURSE_BUDGET", name.upper())
        assert get_budget().name == name


def test_ci_means_smoke(monkeypatch):
    monkeypatch.delenv("UNET_COURSE_BUDGET", raising=False)
    monkeypatch.setenv("CI", "true")
    budget = get_budget()
    assert budget.name == "smoke" and "CI" in budget.reason


def test_without_ci_follows_cuda(monkeypatch):
    monkeypatch.delenv("UNET_COURSE_BUDGET", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_budget().name == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU")
    assert get_budget().name == "gpu"


def test_unknown_budget_names_the_choices(monkeypatch):
    monkeypatch.setenv("UNET_COURSE_BUDGET", "huge")
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        get_budget()


def test_pick_and_str():
    budget = Budget("cpu", "because")
    assert budget.pick(smoke=1, cpu=2, gpu=3) == 2
    assert str(budget) == "budget: cpu (because)"
    assert not budget.is_smoke and Budget("smoke").is_smoke


def test_device_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert best_device().type in ("cpu", "mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert best_device().type == "cuda"


def test_seed_everything_repeats():
    first = seed_everything(3)
    a = (torch.rand(4), np.random.rand(2), torch.rand(2, generator=first))
    second = seed_everything(3)
    b = (torch.rand(4), np.random.rand(2), torch.rand(2, generator=second))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_describe_runtime_says_device_torch_and_budget(monkeypatch):
    import sys
    import types
    import warnings

    from unet_course import describe_runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tesla T4")
    line = describe_runtime(Budget("gpu", "test"))
    assert line == f"torch {torch.__version__} · device cuda (Tesla T4) · budget: gpu (test)"

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # off Colab, no GPU is no surprise: no warning
        assert "budget: cpu" in describe_runtime(Budget("cpu"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    with pytest.warns(RuntimeWarning, match="Change runtime type"):
        describe_runtime(Budget("cpu"))
