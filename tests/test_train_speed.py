"""The training loop's fast paths: Adam over all parameters at once, the NaN/Inf guard's sums, the step benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import classifier_doc

from graphengine.errors import NonFiniteError
from graphengine.training.guards import check_finite
from graphengine.training.optimizers import make_optimizer

SHAPES = {"W1": (4, 3), "b1": (4,), "W2": (2, 4), "b2": (2,)}


def _params(dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


def _grads(rng: np.random.Generator, dtype: str) -> dict[str, np.ndarray]:
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_over_several_parameters_follows_kingma_and_ba(dtype: str, rtol: float, weight_decay: float) -> None:
    params = _params(dtype)
    expected = {k: v.astype(np.float64) for k, v in params.items()}
    hyper = {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": weight_decay}
    opt = make_optimizer("adam", hyper, params)
    m = {k: np.zeros_like(v) for k, v in expected.items()}
    v = {k: np.zeros_like(w) for k, w in expected.items()}
    rng = np.random.default_rng(1)
    for t in range(1, 6):
        grads = _grads(rng, dtype)
        opt.update(params, grads)
        for k, g in grads.items():
            g64 = g.astype(np.float64) + weight_decay * expected[k]
            m[k] = 0.8 * m[k] + 0.2 * g64
            v[k] = 0.99 * v[k] + 0.01 * g64 * g64
            m_hat, v_hat = m[k] / (1 - 0.8**t), v[k] / (1 - 0.99**t)
            expected[k] = expected[k] - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-6)
    for k in SHAPES:
        assert params[k].dtype == np.dtype(dtype)
        np.testing.assert_allclose(params[k], expected[k], rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adam_in_one_pass_is_the_per_parameter_update_bit_for_bit(dtype: str) -> None:
    """One optimizer per parameter takes the per-parameter path; together they must land on the same bits."""
    together = _params(dtype)
    apart = {k: v.copy() for k, v in together.items()}
    hyper = {"lr": 0.003, "weight_decay": 0.001}
    opt = make_optimizer("adam", hyper, together)
    singles = {k: make_optimizer("adam", hyper, {k: apart[k]}) for k in SHAPES}
    rng = np.random.default_rng(2)
    for _ in range(4):
        grads = _grads(rng, dtype)
        opt.update(together, grads)
        for k, single in singles.items():
            single.update(apart, {k: grads[k]})
    for k in SHAPES:
        assert together[k].tobytes() == apart[k].tobytes(), k
        assert opt.state[k]["m"].tobytes() == singles[k].state[k]["m"].tobytes()


def test_adam_falls_back_for_a_subset_of_gradients_and_mixed_dtypes() -> None:
    params = _params("float64")
    opt = make_optimizer("adam", {"lr": 0.1}, params)
    before = {k: v.copy() for k, v in params.items()}
    opt.update(params, {"W1": np.ones(SHAPES["W1"])})
    assert not np.array_equal(params["W1"], before["W1"])
    assert all(np.array_equal(params[k], before[k]) for k in ("b1", "W2", "b2"))
    assert not opt.state["b1"]["m"].any()
    # A float32 gradient for a float64 parameter: the per-parameter path, as before.
    opt.update(params, {k: np.ones(s, np.float32) for k, s in SHAPES.items()})
    assert all(p.dtype == np.float64 for p in params.values())
    mixed = {"a": np.zeros(2), "b": np.zeros(2, np.float32)}
    opt = make_optimizer("adam", {"lr": 0.1}, mixed)
    opt.update(mixed, {"a": np.ones(2), "b": np.ones(2, np.float32)})
    np.testing.assert_allclose(mixed["a"], -0.1)
    np.testing.assert_allclose(mixed["b"], -0.1, rtol=1e-6)


def test_adam_state_round_trips_through_its_arrays_into_the_flat_buffers() -> None:
    """What a checkpoint saves and restores: a restored optimizer continues exactly as the original."""
    rng = np.random.default_rng(3)
    params = _params("float64")
    opt = make_optimizer("adam", {"lr": 0.01}, params)
    for _ in range(3):
        opt.update(params, _grads(rng, "float64"))
    saved = {k: v.copy() for k, v in opt.state_arrays().items()}
    restored_params = {k: v.copy() for k, v in params.items()}
    restored = make_optimizer("adam", {"lr": 0.01}, restored_params)
    restored.load_state_arrays(saved)
    assert restored.t == 3
    grads = _grads(rng, "float64")
    opt.update(params, grads)
    restored.update(restored_params, grads)
    for k in SHAPES:
        assert params[k].tobytes() == restored_params[k].tobytes()


def test_the_guard_passes_finite_gradients_whose_sum_overflows() -> None:
    big = {"w": np.array([1e308, 1e308]), "b": np.zeros(3)}
    with np.errstate(over="ignore"):  # as the loop calls it
        check_finite(0.5, big, 1, 1, 1, 1, None, None)  # the sum is inf; every element is finite


@pytest.mark.parametrize("bad,word", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_the_guard_names_the_parameter_and_what_it_holds(bad: float, word: str) -> None:
    grads = {"w": np.zeros(3), "b": np.array([0.0, bad])}
    with pytest.raises(NonFiniteError, match=rf"the gradient of 'b' holds {word} at step 7 \(epoch 2, batch 3/5\)"):
        check_finite(0.5, grads, 7, 2, 3, 5, None, None)
    with pytest.raises(NonFiniteError, match=r"the loss became nan at step 1"):
        check_finite(float("nan"), {"w": np.zeros(2)}, 1, 1, 1, 1, None, None)


def test_a_step_ignores_overflow_only_inside_its_forward_backward_and_guard() -> None:
    """The step's errstate (a decorator made once an epoch) covers the gradient call, not Adam or the callbacks."""
    import graphengine

    graph = graphengine.load_dict(classifier_doc())
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((40, 4)), "y": rng.integers(0, 3, 40)}
    plan = graph.compile()
    inside: list[dict[str, str]] = []
    callback: list[dict[str, str]] = []

    def gradient_fn(feeds: dict[str, np.ndarray], wrt: list[str]) -> object:
        inside.append(np.geterr())
        return plan.value_and_grad(feeds, wrt=wrt)

    with np.errstate(over="raise", invalid="warn", divide="raise"):
        ambient = np.geterr()
        graphengine.train(
            graph, data, epochs=2, batch_size=16, progress="none", gradient_fn=gradient_fn,
            on_step=lambda _: callback.append(np.geterr()),
        )  # fmt: skip
        assert np.geterr() == ambient
    assert len(inside) == len(callback) > 2
    assert all(state == {**ambient, "over": "ignore", "invalid": "ignore"} for state in inside)
    assert all(state == ambient for state in callback)


def test_the_training_step_benchmark_runs_and_its_loops_agree(capsys: pytest.CaptureFixture[str]) -> None:
    """One short round: every loop (numpy, graphengine, torch when installed) ends at numpy's parameters first."""
    pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (optional extra 'digits')")
    pytest.importorskip("threadpoolctl", reason="the benchmark limits BLAS threads with threadpoolctl")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from benchmarks import training_step
    finally:
        sys.path.pop(0)
    training_step.main(["--rounds", "1", "--epochs", "1", "--dtype", "float64", "float32"])
    out = capsys.readouterr().out
    assert "float64" in out and "float32" in out
    assert out.count("| numpy |") == 2 and out.count("| graphengine |") == 2
