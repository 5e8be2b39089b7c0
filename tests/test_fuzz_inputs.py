"""Bad input, fuzzed (hypothesis): ``purerl train`` and ``purerl.run`` refuse bad fields, values,
env ids and flags with one ``ValueError`` / exit status 2 naming every bad field (the unknown env
id first), never a traceback or a compile; a damaged run folder is refused on ``--resume`` with
the file named, and every file in it is left byte for byte as it was."""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from resume_check import TINY

import purerl
from purerl.algorithms import core
from purerl.cli import main
from purerl.envs import registered
from purerl.experiment import driver

# The fixtures patch nothing between examples (one patch for the whole test), so sharing a
# function-scoped fixture across examples is safe.
FUZZ = settings(
    max_examples=int(os.environ.get("PURERL_FUZZ_EXAMPLES", "40")),  # more to fuzz harder
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# purerl's own algorithms (other test files register toys with checks of their own)
ALGORITHMS = [n for n in core.registered() if core.get(n).Config.__module__.startswith("purerl.")]
ENV_IDS = set(registered())


class Compiled(Exception):
    """Raised where training would start compiling."""


def _compiled(*args, **kwargs):
    raise Compiled


@pytest.fixture
def no_compile(monkeypatch):
    """Training cannot start: reaching the compile raises ``Compiled``."""
    monkeypatch.setattr(driver._Driver, "_compile", _compiled)
    monkeypatch.setattr(jax, "jit", _compiled)


def _defaults(algorithm: str) -> dict[str, object]:
    config = core.get(algorithm).Config()
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


# Built once: strategies must not build configs (beartype draws from `random` to check them).
DEFAULTS = {name: _defaults(name) for name in ALGORITHMS}
LEAVES = {name: purerl.experiment.sweepable_fields(core.get(name).Config()) for name in ALGORITHMS}


def _fields(algorithm: str) -> dict[str, object]:
    """``{field: default}`` of the algorithm's ``Config``."""
    return DEFAULTS[algorithm]


def _is_converted(algorithm: str, name: str) -> bool:
    fields = dataclasses.fields(core.get(algorithm).Config)
    return any(f.name == name and "converter" in f.metadata for f in fields)


def _names(message: str, name: str) -> bool:
    """Some line of ``message`` starts with ``name:`` (or is a sweep error about it), or names
    it as the cause of a clash (``"sequence_length: must divide ... num_steps = -1"``)."""
    lines = [line.strip() for line in message.removeprefix("purerl: error: ").splitlines()]
    heads = (f"{name}:", f"sweep: {name!r}")
    if name == "env":  # an unknown id, or a value that is not a string at all
        heads += ("env_id:",)
    clash = re.compile(rf"^\w+: .*\b{re.escape(name)}\b")
    return any(line.startswith(heads) or clash.search(line) for line in lines)


def _check_message(message: str, expected: list[str], env_typo: bool) -> None:
    assert "Traceback" not in message
    for name in expected:
        assert _names(message, name), f"{name!r} not named in:\n{message}"
    if env_typo:
        first = message.removeprefix("purerl: error: ").splitlines()[0]
        assert first.startswith("env: unknown environment id"), message


# ---------------------------------------------------------------- strategies

IDENTIFIER = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
JUNK = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
BAD_TEXT = {
    float: ["nan", "-nan", "inf", "-inf", "1e400", "-1e400", "", "abc", "0x10", "1,5", "None"],
    int: ["-1", "-7", "2.5", "nan", "inf", "1e400", "", "abc", str(2**31), "1e30", str(2**63)],
    bool: ["maybe", "", "2", "nan", "-1", "yess"],
    tuple: ["", "0", "-3", "a,b", "1.5", str(2**31), "nan", "16,-1"],
}
BAD_VALUES = {
    float: [float("nan"), float("inf"), -float("inf"), 10**400, None, "abc", [], {}, True, 1j],
    int: [-1, 2.5, float("nan"), float("inf"), None, "abc", True, 2**31, 2**100, -(10**30)],
    bool: [None, 2, "maybe", 1.5, [], "nan"],
    tuple: [None, 5, "abc", [1.5], [-1], [2**31], (), [True], [0]],
    str: [None, 5, 1.5, [], b"x"],
}


def _kind(algorithm: str, name: str) -> type:
    """The field's type, from its default (from its annotation when the default is ``None``:
    SAC's ``target_entropy``, a float where ``None`` means "derive it")."""
    default = _fields(algorithm)[name]
    if default is None:
        annotation = str(core.get(algorithm).Config.__dataclass_fields__[name].type)
        assert "Real" in annotation and "None" in annotation, (name, annotation)
        return float
    for kind in (bool, int, float, tuple, str):
        if isinstance(default, kind):
            return kind
    raise AssertionError(default)


def _bad(table: dict, algorithm: str, name: str) -> list:
    """``table[kind]`` without ``None`` where the field takes ``None``."""
    bad = table[_kind(algorithm, name)]
    if _fields(algorithm)[name] is None:
        bad = [b for b in bad if b is not None and b != "None"]
    return bad


@st.composite
def bad_text(draw, algorithm: str, name: str) -> str:
    """A value, as typed after ``--set name=``, that the field must refuse on its own."""
    kind = _kind(algorithm, name)
    if _is_converted(algorithm, name):
        return draw(st.sampled_from(["foo", "1", "abc,def"]))
    if name == "env_id":
        env = draw(JUNK.map(str.strip))
        assume(env not in ENV_IDS)
        return env
    if kind is str:  # no option of any field starts with "zz"
        return "zz" + draw(JUNK).strip()
    return draw(st.sampled_from(_bad(BAD_TEXT, algorithm, name)))


@st.composite
def bad_value(draw, algorithm: str, name: str) -> object:
    """A Python value for ``overrides={name: value}`` that the field must refuse."""
    if _is_converted(algorithm, name):
        return draw(st.sampled_from([5, "foo", [1, 2, 3]]))
    kind = _kind(algorithm, name)
    if kind is str and draw(st.booleans()):
        return draw(bad_text(algorithm, name))
    return draw(st.sampled_from(_bad(BAD_VALUES, algorithm, name)))


def _leaves(algorithm: str) -> list[str]:
    return LEAVES[algorithm]


@st.composite
def bad_sweep(draw, algorithm: str) -> tuple[str, str]:
    """``(--sweep argument, the field it must name)``."""
    fields = _fields(algorithm)
    leaf = draw(st.sampled_from(_leaves(algorithm)))
    static = draw(st.sampled_from(sorted(set(fields) - set(_leaves(algorithm)))))
    unknown = draw(IDENTIFIER.filter(lambda n: n not in fields))
    bad = draw(st.sampled_from(["nan", "inf,0.5", "1e400", "-inf"]))
    return draw(
        st.sampled_from(
            [(f"{leaf}={bad}", leaf), (f"{leaf}=", leaf), (f"{static}=1,2", static)]
            + [(f"{unknown}=0.5", unknown)]
        )
    )


def _maybe(draw, options: list[tuple[str, str]]) -> tuple[str, str] | None:
    return draw(st.sampled_from([None, *options]))


@st.composite
def bad_train_args(draw) -> tuple[list[str], list[str], bool]:
    """``purerl train`` arguments with at least one bad field: ``(argv, the fields each must be
    named, whether the env id is misspelt)``."""
    algorithm = draw(st.sampled_from(ALGORITHMS))
    fields = _fields(algorithm)
    argv, expected = ["train", algorithm, "--no-progress"], []
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        argv += ["--set", f"{name}={draw(bad_text(algorithm, name))}"]
        expected.append("env" if name == "env_id" else name)
    for name in draw(st.lists(IDENTIFIER.filter(lambda n: n not in fields), max_size=2)):
        argv += ["--set", f"{name}={draw(JUNK)}"]
        expected.append(name)
    env_typo = draw(st.booleans())
    if env_typo:
        env = draw(st.sampled_from(["CartPol-v1", "cartpole", "Acrobot", "MountainCar-v9"]))
        argv += ["--env", env]
        expected.append("env")
    flags = {
        "--seeds": ("seeds", ["0", "-1", "-100"]),
        "--seed-offset": ("seed_offset", ["-1", str(2**32), str(2**40)]),
        "--steps": ("total_steps", ["0", "-5", str(2**31), str(10**20)]),
        "--checkpoint-every": ("checkpoint_every", ["-1", "-20"]),
        "--checkpoint-seconds": ("checkpoint_seconds", ["-1", "nan", "-0.5"]),
        "--devices": ("devices", ["0", "abc", "-1", "1.5", "99999"]),
    }
    for flag, (name, values) in flags.items():
        if (value := _maybe(draw, [(v, name) for v in values])) is not None:
            argv += [flag, value[0]]
            expected.append(name)
    if draw(st.booleans()):
        sweep, name = draw(bad_sweep(algorithm))
        argv += ["--sweep", sweep]
        expected.append(name)
    assume(expected)
    return argv, expected, env_typo


@st.composite
def bad_run_kwargs(draw) -> tuple[dict, list[str], bool]:
    """``purerl.run`` keyword arguments with at least one bad value of any type."""
    algorithm = draw(st.sampled_from(ALGORITHMS))
    fields = _fields(algorithm)
    overrides, expected = {}, []
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        overrides[name] = draw(bad_value(algorithm, name))
        expected.append("env" if name == "env_id" else name)
    kwargs = {"algorithm": algorithm, "overrides": overrides, "progress": False}
    env_typo = draw(st.booleans())
    if env_typo:
        kwargs["env"] = draw(st.sampled_from(["CartPol-v1", "Pendulum", "Breakout"]))
        expected.append("env")
    # of the annotated types (the test session type-checks purerl.run's own arguments)
    settings_ = {
        "steps": ("total_steps", [-1, 0, 2**31, 2**40, -(2**70)]),
        "seeds": ("seeds", [0, -1, -(2**40), 10**12]),
        "seed_offset": ("seed_offset", [-1, 2**32, 2**40]),
        "checkpoint_every": ("checkpoint_every", [-1, -(2**40)]),
        "checkpoint_seconds": ("checkpoint_seconds", [-1.0, float("nan"), -float("inf")]),
        "devices": ("devices", ["abc", 0, -1, 1.5, [], ["x"], 99999, float("nan")]),
    }
    for key, (name, values) in settings_.items():
        if draw(st.booleans()):
            kwargs[key] = draw(st.sampled_from(values))
            expected.append(name)
    leaf = draw(st.sampled_from(_leaves(algorithm)))
    sweep = draw(
        st.sampled_from(
            [None, {leaf: "0.5"}, {leaf: []}, {leaf: [float("nan")]}, {leaf: [object()]}]
            + [{leaf: [10**400]}, {leaf: [None]}, {"zz_" + leaf: [0.5]}]
        )
    )
    if sweep is not None:
        kwargs["sweep"] = sweep
        expected.append(next(iter(sweep)))
    assume(expected)
    return kwargs, expected, env_typo


# ---------------------------------------------------------------- bad configs, fuzzed


@FUZZ
@given(case=bad_train_args())
def test_purerl_train_names_every_bad_field_before_compiling(case, no_compile, capsys):
    argv, expected, env_typo = case
    try:
        code = main(argv)
    except Compiled:
        pytest.fail(f"compiled a bad run: {argv}")
    assert code == 2, argv
    _check_message(capsys.readouterr().err, expected, env_typo)


@FUZZ
@given(case=bad_run_kwargs())
def test_purerl_run_names_every_bad_value_of_any_type_before_compiling(case, no_compile):
    kwargs, expected, env_typo = case
    with pytest.raises(ValueError) as info:
        try:
            purerl.run(**kwargs)
        except Compiled:
            pytest.fail(f"compiled a bad run: {kwargs}")
    _check_message(str(info.value), expected, env_typo)


@st.composite
def any_train_args(draw) -> list[str]:
    """``purerl train`` arguments of every kind: good and bad, well-formed or not."""
    algorithm = draw(st.sampled_from([*ALGORITHMS, "dqm", ""]))
    fields = sorted(_fields(algorithm)) if algorithm in ALGORITHMS else ["gamma"]
    argv = ["train", algorithm, "--no-progress"]
    values = st.one_of(JUNK, st.sampled_from(["1", "0", "-1", "0.5", "1e9", "true", "16,16"]))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.one_of(st.sampled_from(fields), IDENTIFIER))
        argv += ["--set", draw(st.sampled_from([f"{name}={draw(values)}", name, "=1"]))]
    for flag in ["--seeds", "--seed-offset", "--steps", "--checkpoint-every", "--devices"]:
        if draw(st.booleans()):
            argv += [flag, draw(st.one_of(values, st.integers(-(2**70), 2**70).map(str)))]
    sizes = [n for n in fields if type(DEFAULTS.get(algorithm, {}).get(n)) is int]
    if sizes and draw(st.booleans()):  # any int32 size: refused as too large, or compiled
        argv += ["--set", f"{draw(st.sampled_from(sizes))}={draw(st.integers(1, 2**31 - 1))}"]
    if draw(st.booleans()):
        argv += ["--sweep", f"{draw(st.sampled_from(fields))}={draw(values)}"]
    if draw(st.booleans()):
        argv += ["--env", draw(st.one_of(st.sampled_from(sorted(ENV_IDS)), JUNK))]
    return argv


@FUZZ
@given(argv=any_train_args())
def test_purerl_train_either_refuses_cleanly_or_reaches_the_compile(argv, no_compile, capsys):
    """Whatever the arguments, the command ends in exit status 2 with an error (one
    ``field: ...`` line per problem), or gets as far as compiling: never another exception."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            code = main([*argv, "--out", str(Path(tmp) / "run"), "--overwrite"])
        except Compiled:
            event("reached the compile")
            return
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, (argv, err)
    assert "error:" in err, (argv, err)


def test_errors_of_every_field_come_together_env_id_first(capsys):
    args = ["train", "dqn", "--env", "CartPol-v1", "--set", "gamma=nan", "--set", "tau=inf"]
    args += ["--set", "learning_rat=1", "--set", "batch_size=lots", "--seeds", "0"]
    assert main([*args, "--no-progress"]) == 2
    lines = capsys.readouterr().err.removeprefix("purerl: error: ").splitlines()
    assert lines[0].startswith("env: unknown environment id 'CartPol-v1'")
    assert "'CartPole-v1'" in lines[0]
    heads = sorted(line.split(":")[0] for line in lines[1:])
    assert heads == ["batch_size", "gamma", "learning_rat", "seeds", "tau"]


def test_nan_and_inf_are_refused_by_every_float_field():
    """NaN compares false with everything: a range check alone would let it through."""
    assert {"dqn", "pqn", "ppo", "a2c", "reinforce", "tabular"} <= set(ALGORITHMS)
    for algorithm in ALGORITHMS:
        for name in _leaves(algorithm):
            for bad in (float("nan"), float("inf")):
                with pytest.raises(ValueError, match=f"^{name}: must be .*, got (nan|inf)"):
                    core.get(algorithm).Config(**{name: bad})


# ---------------------------------------------------------------- a damaged run folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A real, finished run (the same program as test_experiment's, so compiled once)."""
    out = tmp_path_factory.mktemp("runs") / "probe"
    purerl.run(
        "dqn", "ConstantReward-probe", seeds=3, steps=400, overrides=TINY, out=out, progress=False
    )
    return out


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _refused(folder: Path, damaged: str, *, cli: bool = False) -> str:
    """Resume ``folder``: the error (which names the damaged file); every file untouched."""
    before = _hashes(folder)
    if cli:
        assert main(["train", "--resume", str(folder), "--no-progress"]) == 2
        message = ""
    else:
        with pytest.raises(ValueError) as info:
            purerl.experiment.resume(folder, progress=False)
        message = str(info.value)
        assert message.startswith("resume: ") and str(folder / damaged) in message
    assert _hashes(folder) == before
    return message


def _copy(finished: Path, tmp: str) -> Path:
    return Path(shutil.copytree(finished, Path(tmp) / "run"))


def _rewrite_npz(file: Path, change) -> None:
    with np.load(file) as data:
        arrays = dict(data)
    change(arrays)
    with open(file, "wb") as f:
        np.savez(f, **arrays)


def _set_meta(**values):
    def change(arrays):
        meta = json.loads(str(arrays["meta.json"]))
        arrays["meta.json"] = np.array(json.dumps({**meta, **values}))

    return change


def _edit_json(**values):
    def change(folder: Path) -> None:
        spec = json.loads((folder / "config.json").read_text())
        for key, value in values.items():
            target, _, field = key.partition(".")
            if field:
                spec[target][field] = value
            elif value is None:
                del spec[target]
            else:
                spec[target] = value
        (folder / "config.json").write_text(json.dumps(spec))

    return change


def _npz(change):
    return lambda folder: _rewrite_npz(folder / "checkpoint.npz", change)


def _write(name: str, data: bytes):
    return lambda folder: (folder / name).write_bytes(data)


DAMAGE = {
    "empty checkpoint": ("checkpoint.npz", _write("checkpoint.npz", b""), "not a zip"),
    "random checkpoint": ("checkpoint.npz", _write("checkpoint.npz", os.urandom(999)), "zip"),
    "no header": ("checkpoint.npz", _npz(lambda a: a.pop("meta.json")), "no meta.json"),
    "header not JSON": (
        "checkpoint.npz",
        _npz(lambda a: a.__setitem__("meta.json", np.array("{chunks"))),
        "JSONDecodeError",
    ),
    "chunks_done out of range": ("checkpoint.npz", _npz(_set_meta(chunks_done=7)), "chunks_done"),
    "metrics of another shape": (
        "checkpoint.npz",
        _npz(lambda a: a.__setitem__("extra/loss", np.zeros((1, 3, 7), np.float32))),
        "'loss'",
    ),
    "config.json not JSON": ("config.json", _write("config.json", b'{"algo'), "not valid JSON"),
    "config.json not UTF-8": (
        "config.json",
        _write("config.json", b"\xff\xfe{}"),
        "not valid JSON",
    ),
    "config.json a list": ("config.json", _write("config.json", b"[1, 2]"), "JSON object"),
    "no algorithm": ("config.json", _edit_json(algorithm=None), "algorithm is missing"),
    "seeds a string": ("config.json", _edit_json(seeds="3"), "seeds should be"),
    "bad sweep": ("config.json", _edit_json(sweep={"gamma": "x"}), "sweep should map"),
    "unknown field": ("config.json", _edit_json(**{"config.gama": 0.9}), "gama: not a field"),
    "bad value": ("config.json", _edit_json(**{"config.gamma": "x"}), "gamma: cannot read"),
    "unknown env": ("config.json", _edit_json(**{"config.env_id": "Nope-v0"}), "env: unknown"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_run_folder_is_refused_and_left_as_it_was(finished, damage, no_compile):
    file, change, what = DAMAGE[damage]
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy(finished, tmp)
        change(folder)
        assert what in _refused(folder, file)
        _refused(folder, file, cli=True)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["checkpoint.npz", "config.json"]), cut=st.floats(0, 1))
def test_a_truncated_file_is_refused_and_left_as_it_was(finished, name, cut):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy(finished, tmp)
        data = (folder / name).read_bytes().rstrip()  # JSON with its last newline cut is whole
        (folder / name).write_bytes(data[: min(int(cut * len(data)), len(data) - 1)])
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(driver._Driver, "_compile", _compiled)
            _refused(folder, name)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(member=st.integers(0, 10**6), at=st.floats(0, 1), byte=st.integers(1, 255))
def test_a_corrupted_checkpoint_byte_is_refused_and_left_as_it_was(finished, member, at, byte):
    """One byte of one stored array changed: its CRC no longer matches."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy(finished, tmp)
        file = folder / "checkpoint.npz"
        with zipfile.ZipFile(file) as z:
            info = z.infolist()[member % len(z.infolist())]
        data = bytearray(file.read_bytes())
        name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
        start = info.header_offset + 30 + name_length + extra_length  # the member's bytes
        where = start + min(int(at * info.compress_size), info.compress_size - 1)
        data[where] ^= byte
        file.write_bytes(bytes(data))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(driver._Driver, "_compile", _compiled)
            assert "damaged" in _refused(folder, "checkpoint.npz")


@pytest.mark.parametrize(
    "change, what",
    [
        (lambda a: a.pop(max(k for k in a if k.startswith("state/"))), "state arrays"),
        (lambda a: a.__setitem__("state/000000", np.zeros(7)), "state array 0 is float64[7]"),
    ],
    ids=["an array missing", "an array of another shape"],
)
def test_a_checkpoint_of_another_structure_is_refused_and_left_as_it_was(finished, change, what):
    """Arrays missing or of another shape: found when the state is rebuilt (after compiling)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy(finished, tmp)
        _rewrite_npz(folder / "checkpoint.npz", change)
        assert what in _refused(folder, "checkpoint.npz")
