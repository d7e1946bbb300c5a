"""The one-sweep reverse pass of a schedule against the definitions it replaces.

``schedule._reverse_pass`` finds, in one reverse sweep, what used to take
several: which nodes take part, which of their inputs get a contribution,
which steps a cotangent reaches (``live_backward``), what each step releases
and which forward values the reverse pass reads. Over random DAGs, with random
``wrt`` and outputs, every one of those is checked against its definition,
written here the slow, obvious way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import import_benchmarks, random_graph_doc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphengine
from graphengine.engine.schedule import build_schedule, live_backward

ROOT = Path(__file__).resolve().parent.parent


def _reads(op, n_inputs: int, ins: tuple[int, ...], out: int) -> list[int]:
    return [i for p, i in enumerate(ins) if op.needs_input(p)] + ([out] if op.needs_output() else [])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 16), st.data())
def test_the_reverse_pass_matches_its_definitions(seed: int, n_nodes: int, data: st.DataObject) -> None:
    plan = graphengine.load_dict(random_graph_doc(np.random.default_rng(seed), n_nodes)).compile()
    nodes = [step.node_id for step in plan.steps]
    wrt = data.draw(st.lists(st.sampled_from(["x", "p0", "p1", *nodes]), min_size=1, max_size=4, unique=True))
    output = plan.slot[data.draw(st.sampled_from(["loss", *nodes]))]
    wrt_slots = tuple(plan.slot[w] for w in wrt)
    n_sources = len(plan.names) - len(plan.steps)
    s = build_schedule(plan.steps, plan.specs, n_sources, (output,), wrt_slots, output)

    # Taking part: on a path from a wrt slot to the output; in reverse topological order.
    below = {output}  # the output depends on these
    for step in reversed(plan.steps):
        if step.out in below:
            below.update(step.ins)
    above = set(wrt_slots)  # these depend on a wrt slot
    for step in plan.steps:
        if above & set(step.ins):
            above.add(step.out)
    active = [step for step in reversed(plan.steps) if step.out in above and step.out in below]
    assert [b.node_id for b in s.backward] == [step.node_id for step in active]

    for b, step in zip(s.backward, active):
        expected = [
            p
            for p, i in enumerate(step.ins)
            if step.op.vjp_for(p) is not None and i in above and plan.specs[i].dtype.kind == "f"
        ]
        assert [(p, slot) for p, slot, _ in b.grads] == [(p, step.ins[p]) for p in expected]
        assert b.keep_cotangent is (step.out in wrt_slots) and b.ins == step.ins and b.out == step.out
    assert s.live == live_backward(s.backward, output)

    # Releases: a computed slot goes at the last backward step that reads it, and only there.
    reads = [_reads(step.op, len(step.ins), step.ins, step.out) for step in active]
    for k, b in enumerate(s.backward):
        later = {i for r in reads[k + 1 :] for i in r}
        assert sorted(b.release) == sorted({i for i in reads[k] if i >= n_sources and i not in later})
    # A forward value a VJP reads is never dropped in the forward pass.
    kept = {i for r in reads for i in r}
    assert not kept & {slot for _, drop in s.forward for slot in drop}


def test_the_split_of_scenario_f_runs_every_stage(tmp_path: Path) -> None:
    """``benchmarks.first_gradient --split-child`` (the figures of docs/performance-calls.md) on a small file."""
    import_benchmarks()
    from benchmarks.first_gradient import SPLIT, write_graphs

    (_, _, path), *_ = write_graphs(tmp_path, [50])
    cmd = [sys.executable, "-m", "benchmarks.first_gradient", "--split-child", str(path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    stages = json.loads(done.stdout)
    assert set(stages) == set(SPLIT) and all(v >= 0 for v in stages.values())
