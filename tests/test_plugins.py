"""Three ways to get ops: installed entry points, a file path, a module name."""

from __future__ import annotations

import importlib.metadata
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import SINE_PLUGIN

import graphengine
from graphengine import registry as registry_module
from graphengine.errors import DuplicateOpError, PluginImportError

CUBE_MODULE = textwrap.dedent(
    """
    import numpy as np
    from graphengine import OpDef, elementwise_rule

    def cube(x, *, attrs):
        return x ** 3

    def cube_vjp(g, out, x, *, attrs):
        return 3 * x * x * g

    def samples(rng):
        return [((rng.standard_normal(4),), {})]

    OPS = [OpDef("cube", cube, (cube_vjp,), elementwise_rule, samples=samples, doc="x ** 3")]
    """
)


@pytest.fixture
def fresh_entry_points():
    registry_module._installed_registry.cache_clear()
    importlib.invalidate_caches()
    yield
    registry_module._installed_registry.cache_clear()


def make_distribution(root: Path, name: str, module: str, body: str, entry: str) -> None:
    (root / f"{module}.py").write_text(body)
    info = root / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[graphengine.ops]\n{entry}\n")


def test_builtins_come_from_the_installed_distribution() -> None:
    dist = importlib.metadata.distribution("graphengine")
    assert any(ep.group == "graphengine.ops" and ep.value == "graphengine_std:OPS" for ep in dist.entry_points)
    reg = graphengine.default_registry()
    assert "linear" in reg and "entry point 'std' of graphengine" in reg.sources["linear"]
    direct_url = dist.read_text("direct_url.json")
    editable = bool(direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"))
    if not editable:  # CI installs with a plain `pip install .`: the ops must come from site-packages
        import graphengine_std

        assert Path(graphengine_std.__file__).resolve().is_relative_to(Path(str(dist.locate_file(""))).resolve())


def test_third_party_entry_point(tmp_path, monkeypatch, fresh_entry_points) -> None:
    make_distribution(tmp_path, "cubeops", "cubeops", CUBE_MODULE, "cube = cubeops:OPS")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = graphengine.default_registry()
    assert "cube" in reg
    assert reg.sources["cube"] == "entry point 'cube' of cubeops 1.2.3"
    graphengine.check_op_samples(reg["cube"])


def test_broken_entry_point_is_reported_not_fatal(tmp_path, monkeypatch, fresh_entry_points) -> None:
    make_distribution(tmp_path, "brokenops", "brokenops", "raise ImportError('needs libfoo')\n", "broken = brokenops:OPS")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = graphengine.default_registry()
    assert "linear" in reg
    assert any("brokenops" in source and "needs libfoo" in reason for source, reason in reg.problems)


def test_duplicate_from_entry_point_names_both_sources(tmp_path, monkeypatch, fresh_entry_points) -> None:
    body = CUBE_MODULE.replace('OpDef("cube"', 'OpDef("sigmoid"')
    make_distribution(tmp_path, "clash", "clash", body, "clash = clash:OPS")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DuplicateOpError, match=r"'sigmoid' is defined twice: by entry point '(std|clash)'.* and by entry point '(std|clash)'"):
        graphengine.default_registry()


def test_plugin_from_file_path(tmp_path) -> None:
    path = tmp_path / "cube_plugin.py"
    path.write_text(CUBE_MODULE)
    reg = graphengine.default_registry([str(path)])
    assert reg.sources["cube"] == f"plugin {str(path)!r}"


def test_plugin_from_module_name(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_cube_module.py").write_text(CUBE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = graphengine.default_registry(["my_cube_module"])
    assert "cube" in reg


def test_plugin_that_fails_to_import_names_plugin_and_reason(tmp_path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("import numpy\nraise RuntimeError('boom at import')\n")
    with pytest.raises(PluginImportError, match=r"plugin '.*bad.py' failed to import: RuntimeError: boom at import"):
        graphengine.default_registry([str(path)])
    with pytest.raises(PluginImportError, match="no_such_module_xyz"):
        graphengine.default_registry(["no_such_module_xyz"])
    with pytest.raises(PluginImportError, match="no such file"):
        graphengine.default_registry([str(tmp_path / "missing.py")])


def test_plugin_without_ops(tmp_path) -> None:
    path = tmp_path / "empty.py"
    path.write_text("X = 1\n")
    with pytest.raises(PluginImportError, match="exports neither OPS"):
        graphengine.default_registry([str(path)])


def test_duplicate_with_builtin_names_both_sources(tmp_path) -> None:
    path = tmp_path / "dup.py"
    path.write_text(CUBE_MODULE.replace('OpDef("cube"', 'OpDef("exp"'))
    with pytest.raises(DuplicateOpError, match=r"'exp' is defined twice: by entry point 'std' of graphengine .* and by plugin '.*dup.py'"):
        graphengine.default_registry([str(path)])


def test_plugins_do_not_leak_between_registries(tmp_path) -> None:
    path = tmp_path / "cube2.py"
    path.write_text(CUBE_MODULE)
    assert "cube" in graphengine.default_registry([str(path)])
    assert "cube" not in graphengine.default_registry()


def test_custom_op_example_end_to_end() -> None:
    """The README's plugin example: load with the plugin, differentiate, check the op."""
    g = graphengine.load(SINE_PLUGIN.parent / "fanout.json", plugins=[str(SINE_PLUGIN)])
    w, x = 1.3, 0.7
    expected = np.cos(2 * np.sin(w * x)) * 2 * np.cos(w * x) * x  # d/dw sin(2 sin(w x))
    assert g.grad()["w"] == pytest.approx(expected, rel=1e-12)
    graphengine.gradcheck(g.compile())
    assert graphengine.check_op_samples("sin", registry=g.registry) == 2


def test_optimizer_only_plugin_is_accepted_by_the_op_loader(tmp_path) -> None:
    path = tmp_path / "opt_only.py"
    path.write_text("OPTIMIZERS = []\n")
    reg = graphengine.default_registry([str(path)])
    assert "linear" in reg


# --- one generic registry, for ops and for optimizers ------------------------------------------

BOTH_MODULE = CUBE_MODULE + textwrap.dedent(
    """
    from graphengine.training.optimizers import SGD

    class Halving(SGD):
        name = "halving"

    OPTIMIZERS = [Halving]
    """
)


@pytest.fixture
def fresh_optimizer_entry_points():
    from graphengine.training import optimizers

    optimizers._installed.cache_clear()
    importlib.invalidate_caches()
    yield
    optimizers._installed.cache_clear()


def test_ops_and_optimizers_share_one_registry_class() -> None:
    from graphengine.registry import PluginRegistry
    from graphengine.training.optimizers import OptimizerRegistry, default_optimizers

    ops, opts = graphengine.default_registry(), default_optimizers()
    assert isinstance(ops, PluginRegistry) and isinstance(opts, PluginRegistry)
    assert (ops.kind, ops.group, ops.attribute) == ("op", "graphengine.ops", "OPS")
    assert (opts.kind, opts.group, opts.attribute) == ("optimizer", "graphengine.optimizers", "OPTIMIZERS")
    for method in ("register", "register_all", "load_entry_points", "load_plugin", "suggest", "items_of", "copy"):
        assert getattr(graphengine.Registry, method) is getattr(PluginRegistry, method), method  # one loader, one check
        assert getattr(OptimizerRegistry, method) is getattr(PluginRegistry, method), method
    assert ops.suggest("sigmod") == ["sigmoid"] and opts.suggest("adma") == ["adam"]
    assert ops.ops is ops.entries and opts.classes is opts.entries and sorted(ops) == sorted(ops.ops)


def test_one_module_may_export_ops_and_optimizers(tmp_path) -> None:
    from graphengine.training.optimizers import default_optimizers

    path = tmp_path / "both.py"
    path.write_text(BOTH_MODULE)
    ops, opts = graphengine.default_registry([str(path)]), default_optimizers([str(path)])
    assert "cube" in ops and "halving" in opts and "halving" not in ops and "cube" not in opts
    assert ops.sources["cube"] == opts.sources["halving"] == f"plugin {str(path)!r}"


def test_duplicate_op_and_duplicate_optimizer_both_name_both_sources(tmp_path) -> None:
    from graphengine.training.optimizers import default_optimizers

    path = tmp_path / "clash.py"
    path.write_text(BOTH_MODULE.replace('OpDef("cube"', 'OpDef("exp"').replace('name = "halving"', 'name = "adam"'))
    with pytest.raises(DuplicateOpError, match=r"^op 'exp' is defined twice: by entry point 'std' of graphengine .* and by plugin '.*clash.py'$"):
        graphengine.default_registry([str(path)])
    with pytest.raises(DuplicateOpError, match=r"^optimizer 'adam' is defined twice: by graphengine and by plugin '.*clash.py'$"):
        default_optimizers([str(path)])


def test_optimizer_entry_points_use_the_same_loader(tmp_path, monkeypatch, fresh_optimizer_entry_points) -> None:
    from graphengine.training.optimizers import default_optimizers

    module = "from graphengine.training.optimizers import SGD\n\nclass Slow(SGD):\n    name = 'slow'\n\nOPTIMIZERS = [Slow]\n"
    (tmp_path / "slowopt.py").write_text(module)
    (tmp_path / "brokenopt.py").write_text("raise ImportError('needs libbar')\n")
    info = tmp_path / "slowopt-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slowopt\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[graphengine.optimizers]\nslow = slowopt\nbroken = brokenopt:OPTIMIZERS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    opts = default_optimizers()
    assert "slow" in opts and opts.sources["slow"] == "entry point 'slow' of slowopt 2.0"
    assert any("'broken'" in source and "needs libbar" in reason for source, reason in opts.problems)
    assert "sgd" in opts


def test_bad_items_are_refused_whatever_the_kind(tmp_path) -> None:
    from graphengine.training.optimizers import default_optimizers

    path = tmp_path / "bad_items.py"
    path.write_text("OPS = ['not an op']\nOPTIMIZERS = [42]\n")
    with pytest.raises(PluginImportError, match=r"plugin '.*bad_items.py': OPS holds str 'not an op', not an OpDef"):
        graphengine.default_registry([str(path)])
    with pytest.raises(PluginImportError, match=r"plugin '.*bad_items.py': OPTIMIZERS holds int 42, not an Optimizer subclass"):
        default_optimizers([str(path)])
