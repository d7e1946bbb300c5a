"""ONNX's backend node tests, run through graphengine: forward at the suite's tolerances, then gradients.

Every node test is one small model with inputs and expected outputs. ONNX 1.23
builds them in memory; :func:`build_cache` writes them once, with ONNX's own
writer, to ``<cache>/<onnx version>/node/<test>/`` (``model.onnx`` and
``test_data_set_0/input_*.pb``, ``output_*.pb``). :func:`run_case` imports a
test's model, runs it and compares at rtol 1e-3, atol 1e-7; a test that passes
forward then has the gradient of ``sum(out * r)`` with respect to each float
input checked against central differences in float64.

``python -m graphengine.onnx.conformance`` (or ``graphengine conformance``)
prints the table: per op, passed, failed and skipped, each skip with its reason.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import GraphEngineError
from .errors import UnsupportedOnnxError
from .importer import import_model
from .safety import read_model

__all__ = ["Outcome", "build_cache", "case_dirs", "run_case", "run_all", "table", "main"]

RTOL, ATOL = 1e-3, 1e-7
DEFAULT_CACHE = Path(".cache") / "onnx-node-tests"


@dataclass(frozen=True)
class Outcome:
    """One node test: ``status`` is pass, fail or skip; ``grad`` is pass, fail, kink (the one-sided differences
    disagree, so there is no derivative to compare) or None (no float input or output)."""

    name: str
    op: str
    status: str
    reason: str = ""
    grad: str | None = None


def build_cache(root: str | os.PathLike[str] = DEFAULT_CACHE) -> Path:
    """Write ONNX's node tests under ``root/<onnx version>`` once; return the folder holding ``node/``."""
    import onnx
    from onnx import TensorProto, numpy_helper
    from onnx.backend.test.case.node import collect_testcases

    folder = Path(root) / onnx.__version__
    if (folder / "complete").exists():
        return folder
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    for case in cases:
        data = folder / "node" / case.name / "test_data_set_0"
        data.mkdir(parents=True, exist_ok=True)
        assert case.model is not None and case.data_sets  # node tests carry both
        (data.parent / "model.onnx").write_bytes(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        for prefix, values, infos in (
            ("input", inputs, case.model.graph.input),
            ("output", outputs, case.model.graph.output),
        ):
            for j, (value, info) in enumerate(zip(values, infos)):
                if not info.type.HasField("tensor_type"):
                    continue  # sequences, maps, optionals: the runner skips these tests by their types
                proto = (
                    value if isinstance(value, TensorProto) else numpy_helper.from_array(np.asarray(value), info.name)
                )
                (data / f"{prefix}_{j}.pb").write_bytes(proto.SerializeToString())
    (folder / "complete").write_text("written by graphengine.onnx.conformance.build_cache\n")
    return folder


def case_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "node").iterdir() if (p / "model.onnx").exists())


def _op(model: Any) -> str:
    ops = [n.op_type for n in model.graph.node]
    return ops[0] if len(ops) == 1 else "(function expanded)"


def _read(path: Path) -> np.ndarray:
    from onnx import TensorProto, numpy_helper

    tensor = TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return np.asarray(numpy_helper.to_array(tensor))


def _skip_reason(model: Any) -> str | None:
    for v in [*model.graph.input, *model.graph.output]:
        kind = v.type.WhichOneof("value")
        if kind != "tensor_type":
            return f"{kind.replace('_type', '')} types" if kind else "untyped values"
    return None


def _dtype_reason(text: str) -> str:
    match = re.search(r"element type (\w+)", text)
    return f"{match.group(1)} tensors" if match else text


def _import(model: Any, feeds: dict[str, np.ndarray]) -> tuple[Any, dict[str, np.ndarray]]:
    """Import, freezing each input the model reads as an attribute (a shape, axes, a bound), one at a time."""
    frozen: dict[str, np.ndarray] = {}
    while True:
        try:
            return import_model(model, frozen=frozen), {k: v for k, v in feeds.items() if k not in frozen}
        except UnsupportedOnnxError as exc:
            match = re.search(r"must be constant data.*\('(.+?)'\)|\(('.+?')\) must be constant data", exc.reason)
            name = (
                next((n for n in feeds if f"({n!r})" in exc.reason), None) if "must be constant" in exc.reason else None
            )
            if match is None and name is None or name is None or name in frozen:
                raise
            frozen[name] = feeds[name]


def run_case(case: Path, *, grad: bool = True) -> Outcome:
    """Run one node test folder; never raises for a wrong or unsupported model."""
    model = read_model(case / "model.onnx")
    name, op = case.name, _op(model)
    reason = _skip_reason(model)
    if reason:
        return Outcome(name, op, "skip", reason)
    data = case / "test_data_set_0"
    feeds = {v.name: _read(data / f"input_{i}.pb") for i, v in enumerate(model.graph.input)}
    expected = [_read(data / f"output_{i}.pb") for i in range(len(model.graph.output))]
    feeds = {k: v.astype(np.int64) if v.dtype == np.bool_ else v for k, v in feeds.items()}
    try:
        imported, feeds = _import(model, feeds)
        graph = imported.graph()
    except UnsupportedOnnxError as exc:
        return Outcome(name, op, "skip", _dtype_reason(exc.reason))
    except GraphEngineError as exc:
        return Outcome(name, op, "fail", f"import: {exc}")
    outs = [imported.names[o.name] for o in model.graph.output]
    try:
        with np.errstate(all="ignore"):
            got = graph.run(feeds, outputs=outs)
    except GraphEngineError as exc:
        return Outcome(name, op, "fail", f"run: {exc}")
    for o, want in zip(outs, expected):
        have = got[o]
        if have.shape != want.shape or not np.allclose(have, want.astype(have.dtype) if want.dtype == np.bool_ else want,
                                                        rtol=RTOL, atol=ATOL, equal_nan=True):  # fmt: skip
            return Outcome(name, op, "fail", f"output {o}: shape {have.shape} vs {want.shape} or values differ")
    return Outcome(name, op, "pass", grad=_grad_check(graph, feeds, outs) if grad else None)


def _grad_check(graph: Any, feeds: dict[str, np.ndarray], outs: Sequence[str]) -> str | None:
    """d/dt sum(out(x + t v) * r) by central differences in float64, against the engine, for each float output."""
    wrt = [k for k, v in feeds.items() if v.dtype.kind == "f" and v.size]
    outs = [o for o in outs if graph.spec(o).dtype.kind == "f"]
    if not wrt or not outs:
        return None
    plan = graph.compile().with_dtype(np.dtype("float64"))
    rng = np.random.default_rng(0)
    base = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in feeds.items()}
    for o in outs:
        y = plan.run(base, outputs=[o])[o]
        if not np.all(np.isfinite(y)) or y.size == 0:
            continue
        r = rng.standard_normal(y.shape)
        grads = plan.grad(base, wrt, output=o, cotangent=r)
        v = {k: rng.standard_normal(base[k].shape) for k in wrt}
        eps = 1e-6

        def at(t: float, o: str = o, r: np.ndarray = r) -> float:
            moved = {**base, **{k: base[k] + t * v[k] for k in wrt}}
            return float(np.sum(plan.run(moved, outputs=[o])[o] * r))

        with np.errstate(all="ignore"):  # a probe past the edge of the domain gives NaN, judged just below
            below, here, above = at(-eps), at(0.0), at(eps)
        left, right = (here - below) / eps, (above - here) / eps
        if not np.isfinite([below, here, above]).all() or abs(left - right) > 1e-3 * max(abs(left), abs(right), 1.0):
            return "kink"  # a kink or the edge of the domain (relu at 0, tied minima, 0 ** y): no derivative to check
        numeric = (above - below) / (2 * eps)
        analytic = sum(float(np.vdot(grads[k], v[k])) for k in wrt)
        if not abs(analytic - numeric) <= 1e-5 * max(abs(analytic), abs(numeric), 1.0):
            return "fail"
    return "pass"


def run_all(folder: Path, *, grad: bool = True) -> list[Outcome]:
    return [run_case(case, grad=grad) for case in case_dirs(folder)]


def table(outcomes: Sequence[Outcome]) -> str:
    """Per op: passed, failed, skipped (with reasons), gradients agreed / checked; then the totals."""
    by_op: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_op[o.op].append(o)
    lines = [f"{'op':28} {'pass':>5} {'fail':>5} {'skip':>5} {'grad ok':>8}  skipped because"]
    for op in sorted(by_op):
        group = by_op[op]
        count = Counter(o.status for o in group)
        checked = [o for o in group if o.grad in ("pass", "fail")]
        reasons = Counter(o.reason for o in group if o.status == "skip")
        why = "; ".join(f"{r} ({n})" for r, n in reasons.most_common(3))
        grad = f"{sum(o.grad == 'pass' for o in checked)}/{len(checked)}"
        lines.append(f"{op:28} {count['pass']:5} {count['fail']:5} {count['skip']:5} {grad:>8}  {why}")
    total = Counter(o.status for o in outcomes)
    run = total["pass"] + total["fail"]
    checked = [o for o in outcomes if o.grad in ("pass", "fail")]
    kinks = [o.name for o in outcomes if o.grad == "kink"]
    lines.append(
        f"total: {total['pass']} passed, {total['fail']} failed, {total['skip']} skipped; "
        f"{total['pass']}/{run} = {100 * total['pass'] / max(run, 1):.1f}% of the tests run pass forward; "
        f"gradients agree in {sum(o.grad == 'pass' for o in checked)}/{len(checked)}; "
        f"not differentiable at the test point: {', '.join(kinks) or 'none'}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m graphengine.onnx.conformance [--cache DIR] [--failures] [--no-grad]``."""
    parser = argparse.ArgumentParser(prog="graphengine conformance", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return command(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache", default=str(DEFAULT_CACHE), help="where the node tests are written (default: %(default)s)"
    )
    parser.add_argument("--failures", action="store_true", help="also list every failed test with its reason")
    parser.add_argument("--no-grad", action="store_true", help="skip the gradient checks")


def command(args: argparse.Namespace) -> int:
    outcomes = run_all(build_cache(args.cache), grad=not args.no_grad)
    print(table(outcomes))
    if args.failures:
        for o in outcomes:
            if o.status == "fail" or o.grad == "fail":
                print(f"FAIL {o.name} ({o.op}): {o.reason or 'gradient'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
