"""Declared parameters: every method `[params]` field and dataset `-O` option is checked by one schema
(`bench.core.params`), and a bad value is one line naming the field, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench
from bench.core.errors import BenchError
from bench.core.params import REQUIRED, Param, check_params, schema_of
from bench.datasets import dataset_class, dataset_names
from bench.methods import BACKENDS, Method, RunContext, backend_class, method_backend

ROOT = Path(__file__).resolve().parents[1]
PHANTOM = ["-O", "n_test=8", "-O", "n_train=0"]


def test_a_param_checks_type_range_and_choices() -> None:
    grid = Param(int, 256, ge=1)
    assert grid.convert(3) == 3
    for bad in ("big", 0, -3, 2.5, True):
        with pytest.raises(ValueError, match="^an integer >= 1$"):
            grid.convert(bad)
    fraction = Param(float, 1 / 3, gt=0)
    assert fraction.convert(1) == 1.0 and isinstance(fraction.convert(1), float)
    for bad in (0, -1, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="^a number > 0$"):
            fraction.convert(bad)
    assert Param(int, 0, ge=0, le=10).expected() == "an integer in 0..10"
    assert Param(float, 0.5, ge=0, le=1).expected() == "a number in [0, 1]"
    assert Param(str, "a", choices=("a", "b")).expected() == "one of a, b"
    assert Param((str, list), items=int).expected() == "a string or a list of integers"
    with pytest.raises(ValueError, match="^a list of integers$"):
        Param(list, items=int).convert([1, "2"])
    # command-line text is parsed to the declared type
    assert Param(int).convert("7", text=True) == 7 and Param(bool).convert("true", text=True) is True
    assert Param(str).convert("7", text=True) == "7"


def test_check_params_fills_defaults_and_names_field_value_and_range() -> None:
    schema = {"grid": Param(int, 256, ge=1), "mode": Param(str, REQUIRED, choices=("a", "b")), "free": Param()}
    assert check_params({"mode": "a"}, schema, "spec.toml") == {"grid": 256, "mode": "a"}  # `free` stays out
    cases = [({"mode": "a", "grid": "big"}, "spec.toml: params.grid = 'big' is not an integer >= 1"),
             ({"mode": "c"}, "spec.toml: params.mode = 'c' is not one of a, b"),
             ({}, "spec.toml: missing params.mode (one of a, b)"),
             ({"mode": "a", "gird": 3}, "spec.toml: unknown field 'params.gird' (known: free, grid, mode)")]
    for values, message in cases:
        with pytest.raises(BenchError) as info:
            check_params(values, schema, "spec.toml")
        assert str(info.value) == message
    with pytest.raises(BenchError) as info:
        check_params({"n": "-1"}, {"n": Param(int, 0, ge=0)}, "dataset d", where="", text=True, noun="option")
    assert str(info.value) == "dataset d: option n=-1 is not an integer >= 0"


def test_every_built_in_backend_and_dataset_declares_its_fields_in_the_schema() -> None:
    for name in BACKENDS:
        declared = backend_class(name).known_params
        assert isinstance(declared, dict) and all(isinstance(p, Param) for p in declared.values()), name
    for name in dataset_names():
        schema = dataset_class(name).options_schema
        assert isinstance(schema, dict) and all(isinstance(p, Param) for p in schema.values()), name


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "grid=big"], "adapters/oracle_gaussian.toml: params.grid = 'big' is not an integer >= 1"),
    (["--set", "grid=0"], "adapters/oracle_gaussian.toml: params.grid = 0 is not an integer >= 1"),
    (["--set", "grid=-3"], "adapters/oracle_gaussian.toml: params.grid = -3 is not an integer >= 1"),
    (["--set", "sigma_fraction=0"], "adapters/oracle_gaussian.toml: params.sigma_fraction = 0 is not a number > 0"),
    (["--set", "sigma_fraction=-1"], "adapters/oracle_gaussian.toml: params.sigma_fraction = -1 is not a number > 0"),
    (["--set", "backend=uniform"],
     "adapters/oracle_gaussian.toml: unknown field 'params.grid' (backend 'uniform' reads no params)"),
    (["-O", "seed=-1"], "dataset phantom: option seed=-1 is not an integer >= 0"),
    (["-O", "n_test=many"], "dataset phantom: option n_test=many is not an integer in 0..100000"),
    (["-O", "size=huge"], "dataset phantom: option size=huge is not one of default, mimic"),
])
def test_bad_set_and_option_values_are_one_line_and_write_nothing(bench_cli, tmp_path: Path, args: list[str],
                                                                   message: str) -> None:
    out = tmp_path / "run"
    r = bench_cli("run", "-m", "oracle_gaussian", "-d", "phantom", *PHANTOM, *args, "--out", out)
    assert r.code != 0 and r.err.strip() == f"error: {message}"
    assert not out.exists()


def test_a_bad_value_in_a_spec_file_is_one_line(bench_cli, tmp_path: Path) -> None:
    text = (ROOT / "adapters" / "oracle_gaussian.toml").read_text().replace('name = "oracle_gaussian"',
                                                                           'name = "mine"')
    spec = tmp_path / "mine.toml"
    spec.write_text(text.replace("grid = 256", 'grid = "big"'))
    r = bench_cli("run", "-m", spec, "-d", "phantom", *PHANTOM, "--out", tmp_path / "run")
    assert r.code != 0 and r.err.strip() == f"error: {spec}: params.grid = 'big' is not an integer >= 1"


@pytest.mark.parametrize(("backend", "override", "message"), [
    ("box_prior", "grid=0", "params.grid = 0 is not an integer in 1..1024"),
    ("biovil", "sigma=-1", "params.sigma = -1 is not a number >= 0"),
    ("biovil", "crop=600", "params.crop = 600 is not in 1..resize (512)"),
    ("cxrbert_ldm", "num_inference_steps=0", "params.num_inference_steps = 0 is not an integer in 1..100000"),
    ("cxrbert_ldm", "seed=-1", "params.seed = -1 is not an integer >= 0"),
    ("anatomy_ldm", "read_tokens=all", "params.read_tokens = 'all' is not one of location, pathology, both"),
])
def test_every_backend_refuses_a_value_out_of_range(backend: str, override: str, message: str) -> None:
    from bench.methods.specs import apply_overrides, load_method_spec

    spec = apply_overrides(load_method_spec(backend), [override])
    with pytest.raises(BenchError) as info:
        cls = method_backend(spec, f"adapters/{backend}.toml")
        cls(spec, RunContext(random_weights=True))
    assert str(info.value) == f"adapters/{backend}.toml: {message}"


def _plugin(known) -> type[Method]:
    class Plugin(Method):
        known_params = known

        def heatmaps(self, samples, dataset):  # pragma: no cover - never called
            return []

    return Plugin


@pytest.mark.parametrize(("known", "params", "message", "checked"), [
    # the older form: names only, any value; the values are kept as given
    (("grid", "sigma"), {"grid": "big"}, None, {"grid": "big"}),
    (("grid",), {"gird": 1}, "p.toml: unknown field 'params.gird' (known: grid)", None),
    # bare types: the type is checked
    ({"grid": int}, {"grid": "big"}, "p.toml: params.grid = 'big' is not an integer", None),
    # bench.Param: type, range, default
    ({"grid": bench.Param(int, 32, ge=1)}, {"grid": 0}, "p.toml: params.grid = 0 is not an integer >= 1", None),
    ({"grid": bench.Param(int, 32, ge=1)}, {}, None, {"grid": 32}),
    # nothing declared: nothing checked
    (None, {"anything": [1]}, None, {"anything": [1]}),
])
def test_plugin_backends_declare_their_params_old_and_new_forms(known, params, message, checked) -> None:
    cls = _plugin(known)
    spec = {"name": "p", "backend": "p", "params": params}
    if message is None:
        assert schema_of(known) is None or set(schema_of(known)) >= set(checked)
        assert cls(spec, RunContext()).params == checked
    else:
        with pytest.raises(BenchError) as info:
            check_params(params, schema_of(known), "p.toml")
        assert str(info.value) == message


def test_a_dataset_with_only_options_help_still_works() -> None:
    class Old(bench.Dataset):
        name = "old"
        options_help = {"csv": "a path"}

        def samples(self):  # pragma: no cover - never called
            return []

    assert Old(options={"csv": "x.csv"}).settings == {"csv": "x.csv"}
    with pytest.raises(BenchError, match=r"^dataset old: unknown option 'cvs' \(known: csv\)$"):
        Old(options={"cvs": "x"})
    assert Old().settings == {}
