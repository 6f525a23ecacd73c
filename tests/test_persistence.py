"""Persistence: pickle/joblib and the safe model file (save / load), devices, versions,
and files that are damaged or hostile."""

import io
import json
import pickle
import warnings
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import sklfm
from sklfm import (
    InconsistentVersionWarning,
    LocalFlowMatching,
    LocalFlowMatchingOutlierDetector,
)
from sklfm.core import VelocityMLP
from sklfm.datasets import make_rings

from ._helpers import TINY

COLUMNS = ["width", "height"]


@pytest.fixture(scope="module")
def df():
    return pd.DataFrame(make_rings(200, random_state=0), columns=COLUMNS)


@pytest.fixture(scope="module")
def density(df):
    return LocalFlowMatching(**TINY).set_output(transform="pandas").fit(df)


@pytest.fixture(scope="module")
def detector(df):
    return LocalFlowMatchingOutlierDetector(**TINY, contamination=0.05).fit(df)


def _outputs(model, X):
    """Everything a fitted model computes, for exact comparison after a round trip."""
    out = {"scores": model.score_samples(X), "params": repr(model.get_params())}
    if isinstance(model, LocalFlowMatching):
        out["samples"] = np.asarray(model.sample(7, random_state=3))
        out["codes"] = np.asarray(model.transform(X))
        out["inverse"] = np.asarray(model.inverse_transform(out["codes"][:5]))
    else:
        out["decision"] = model.decision_function(X)
        out["labels"] = model.predict(X)
        out["offset"] = model.offset_
    return out


def _assert_same_outputs(a, b, X):
    before, after = _outputs(a, X), _outputs(b, X)
    for key in before:
        assert_array_equal(np.asarray(after[key]), np.asarray(before[key]), err_msg=key)
    assert_array_equal(a.feature_names_in_, b.feature_names_in_)
    assert a.n_features_in_ == b.n_features_in_
    for key in ("loss_curve_", "validation_scores_", "n_iter_per_block_"):
        for x, y in zip(getattr(a, key), getattr(b, key)):
            assert_array_equal(x, y, err_msg=key)


def _saved(model, device=None):
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    return sklfm.load(buffer, device=device)


# --- round trips ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["density", "detector"])
@pytest.mark.parametrize(
    "round_trip",
    [
        _saved,
        lambda m: pickle.loads(pickle.dumps(m)),
        lambda m: joblib.load(_joblib_buffer(m)),
    ],
    ids=["save-load", "pickle", "joblib"],
)
def test_round_trip_gives_identical_outputs(name, round_trip, request, df):
    model = request.getfixturevalue(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no version or device warning in the same process
        restored = round_trip(model)
    assert type(restored) is type(model)
    _assert_same_outputs(model, restored, df)


def _joblib_buffer(model):
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    buffer.seek(0)
    return buffer


def test_save_to_path_and_set_output_survive(density, df, tmp_path):
    path = tmp_path / "model.sklfm"
    density.save(path)
    restored = sklfm.load(str(path))
    assert isinstance(restored.transform(df), pd.DataFrame)  # set_output is state too
    assert list(restored.sample(2, random_state=0).columns) == COLUMNS
    assert [p.name for p in tmp_path.iterdir()] == ["model.sklfm"]  # no temporary left


def test_pipeline_pickles_and_joblibs(df):
    pipe = Pipeline([("scale", StandardScaler()), ("flow", LocalFlowMatching(**TINY))]).fit(df)
    for restored in (pickle.loads(pickle.dumps(pipe)), joblib.load(_joblib_buffer(pipe))):
        assert_array_equal(restored.score_samples(df), pipe.score_samples(df))
        flow, restored_flow = pipe[-1], restored[-1]
        assert_array_equal(restored_flow.sample(4, random_state=2), flow.sample(4, random_state=2))


def test_unfitted_round_trips_unfitted(df):
    for restored in (_saved(LocalFlowMatching(**TINY)), pickle.loads(pickle.dumps(LocalFlowMatching(**TINY)))):
        assert restored.get_params() == LocalFlowMatching(**TINY).get_params()
        with pytest.raises(NotFittedError):
            restored.score_samples(df)


def test_random_state_instance_parameter_round_trips(df):
    model = LocalFlowMatching(**{**TINY, "random_state": np.random.RandomState(5)}).fit(df)
    restored = _saved(model)
    # The parameter's generator state is carried: the next draws agree.
    assert_array_equal(restored.sample(3), model.sample(3))


# --- the state is plain values and CPU arrays ---------------------------------------------


def _classes_in_pickle(payload):
    found = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.append(f"{module}.{name}")
            return super().find_class(module, name)

    Recorder(io.BytesIO(payload)).load()
    return found


def test_pickle_holds_no_torch_objects(density):
    # No torch class is referenced: loading needs neither torch's unpickler nor a device.
    classes = _classes_in_pickle(pickle.dumps(density))
    assert "sklfm._density.LocalFlowMatching" in classes
    assert not [c for c in classes if c.startswith("torch")]
    state = density.__getstate__()
    assert state["objects"] == []
    assert all(isinstance(a, np.ndarray) for a in state["arrays"].values())
    weights = [k for k in state["arrays"] if ".net.weights." in k]
    assert weights and all(state["arrays"][k].dtype == np.float32 for k in weights)


def test_loading_leaves_global_torch_rng_alone(density):
    before = torch.get_rng_state()
    _saved(density)
    pickle.loads(pickle.dumps(density))
    assert torch.equal(torch.get_rng_state(), before)


def test_new_fitted_state_is_carried_without_format_changes(df):
    # E.g. distillation students: a list of VelocityMLPs and a dict under new names.
    model = LocalFlowMatching(**TINY).fit(df)
    generator = torch.Generator().manual_seed(0)
    model.students_ = [VelocityMLP(2, (4,), "silu", generator) for _ in range(2)]
    model.student_steps_ = {"per_block": (1, 2), "rate": np.float32(0.5)}
    for restored in (_saved(model), pickle.loads(pickle.dumps(model))):
        for a, b in zip(model.students_, restored.students_):
            assert type(b) is VelocityMLP and b.activation == "silu"
            for p, q in zip(a.parameters(), b.parameters()):
                assert torch.equal(p, q)
        assert restored.student_steps_ == model.student_steps_
        assert type(restored.student_steps_["rate"]) is np.float32


def test_save_refuses_unknown_types_and_subclasses(df, tmp_path):
    model = LocalFlowMatching(**TINY).fit(df)
    model.extra_ = object()
    with pytest.raises(TypeError, match=r"Cannot save extra_ of type object"):
        model.save(tmp_path / "m.sklfm")
    assert not list(tmp_path.iterdir())
    # Pickle keeps what the format cannot express.
    assert isinstance(pickle.loads(pickle.dumps(model)).extra_, object)

    class Custom(LocalFlowMatching):
        pass

    with pytest.raises(TypeError, match="use pickle or joblib for subclasses"):
        Custom(**TINY).save(tmp_path / "c.sklfm")


def test_failed_save_keeps_the_previous_file(density, df, tmp_path, monkeypatch):
    path = tmp_path / "model.sklfm"
    density.save(path)
    original = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(OSError, match="disk full"):
        density.save(path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.sklfm"]


# --- devices ----------------------------------------------------------------------------


def _as_if_fitted_on_cuda(model):
    copy = pickle.loads(pickle.dumps(model))
    copy.device_ = torch.device("cuda", 0)
    return copy


@pytest.mark.parametrize(
    "round_trip", [_saved, lambda m: pickle.loads(pickle.dumps(m))], ids=["load", "pickle"]
)
def test_cuda_model_loads_on_cpu_only_machine(density, df, round_trip, monkeypatch):
    cuda_model = _as_if_fitted_on_cuda(density)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="fitted on cuda:0, which is not available here"):
        restored = round_trip(cuda_model)
    assert restored.device_ == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in restored.chain_.parameters())
    assert_array_equal(restored.score_samples(df), density.score_samples(df))
    assert_array_equal(restored.sample(3, random_state=0), density.sample(3, random_state=0))


def test_load_device_argument(density, df, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = _saved(_as_if_fitted_on_cuda(density), device="cpu")
    assert restored.device_ == torch.device("cpu")
    with pytest.raises(ValueError, match="device='cuda' was requested but is not available"):
        _saved(density, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_real_cuda_model_pickles_as_cpu_arrays_and_loads_on_cpu(df, monkeypatch):
    model = LocalFlowMatching(**{**TINY, "device": "cuda"}).fit(df)
    payload = pickle.dumps(model)
    assert not [c for c in _classes_in_pickle(payload) if c.startswith("torch")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="not available here"):
        restored = pickle.loads(payload)
    assert restored.device_.type == "cpu"
    np.testing.assert_allclose(restored.score_samples(df), model.score_samples(df), rtol=1e-10)


# --- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "round_trip", [_saved, lambda m: pickle.loads(pickle.dumps(m))], ids=["load", "pickle"]
)
def test_version_mismatch_warns(density, round_trip):
    old = pickle.loads(pickle.dumps(density))
    assert old._fit_versions == {"sklfm": sklfm.__version__, "torch": torch.__version__}
    old._fit_versions = {"sklfm": "0.0.1", "torch": "1.13.0"}
    with pytest.warns(InconsistentVersionWarning) as record:
        round_trip(old)
    message = str(record[0].message)
    assert f"torch 1.13.0 -> {torch.__version__}" in message
    assert f"sklfm 0.0.1 -> {sklfm.__version__}" in message
    assert record[0].message.original_versions == {"sklfm": "0.0.1", "torch": "1.13.0"}


# --- damaged, foreign and hostile files ------------------------------------------------------


def _model_file(model):
    buffer = io.BytesIO()
    model.save(buffer)
    return buffer.getvalue()


def _rewrite(data, replace):
    """A copy of the zip `data` with members changed by replace(name, bytes) -> bytes | None."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            content = replace(name, src.read(name))
            if content is not None:
                dst.writestr(name, content)
    return out.getvalue()


def _edit_meta(data, edit):
    def replace(name, content):
        if name != "meta.json":
            return content
        meta = json.loads(content)
        edit(meta)
        return json.dumps(meta)

    return _rewrite(data, replace)


class _Payload:
    """Creates `marker` when unpickled: what a malicious pickle would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _object_npy(obj):
    buffer = io.BytesIO()
    np.save(buffer, np.array([obj], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _torch_style_zip(payload):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    return buffer.getvalue()


# Each attack: (a valid model file, a live payload object) -> the file's bytes.
HOSTILE = {
    "raw pickle": lambda data, payload: pickle.dumps(payload),
    "zip holding a pickle": lambda data, payload: _torch_style_zip(pickle.dumps(payload)),
    "object array member": lambda data, payload: _rewrite(
        data, lambda name, content: _object_npy(payload) if ".weights.0" in name else content
    ),
    "pickled entry kind": lambda data, payload: _edit_meta(
        data, lambda meta: meta["attributes"]["items"].update(x_={"kind": "pickled", "index": 0})
    ),
    "foreign class": lambda data, payload: _edit_meta(
        data,
        lambda meta: meta["attributes"]["items"].update(
            x_={"kind": "object", "class": "Popen", "attributes": {"kind": "dict", "items": {}}}
        ),
    ),
    "foreign estimator": lambda data, payload: _edit_meta(
        data, lambda meta: meta.update({"class": "subprocess.Popen"})
    ),
}


@pytest.mark.parametrize("attack", list(HOSTILE))
def test_malicious_files_are_refused_without_running(attack, density, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.sklfm"
    path.write_bytes(HOSTILE[attack](_model_file(density), _Payload(marker)))
    with pytest.raises(ValueError, match="sklfm"):
        sklfm.load(path)
    assert not marker.exists()
    # The payload is live: unpickling it, as pickle.load would, creates the marker.
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda data: data[: len(data) // 2], "not a valid sklfm model file"),
        (lambda data: data[:100], "not a valid sklfm model file"),
        (lambda data: b"", "not a valid sklfm model file"),
        (lambda data: b"PK" + bytes(200), "not a valid sklfm model file"),
        (
            lambda data: _rewrite(data, lambda n, c: c[:-8] if ".weights.0" in n else c),
            "truncated or has a wrong shape",
        ),
        (
            lambda data: _rewrite(data, lambda n, c: None if ".biases.1" in n else c),
            "not a valid sklfm model file",
        ),
        (lambda data: _rewrite(data, lambda n, c: None if n == "meta.json" else c), "no meta.json"),
        (lambda data: _rewrite(data, lambda n, c: b"{" if n == "meta.json" else c), "not a valid"),
        (lambda data: _edit_meta(data, lambda m: m.update(format="other")), "wrong format tag"),
        (
            lambda data: _edit_meta(
                data, lambda m: m["attributes"]["items"]["chain_"]["blocks"][0]["net"].update(
                    activation="gelu"
                )
            ),
            "unknown activation 'gelu'",
        ),
        (
            lambda data: _edit_meta(data, lambda m: m["params"]["items"].update(n_blocks=3)),
            "unexpected keyword argument 'n_blocks'",
        ),
    ],
    ids=[
        "half", "first-100-bytes", "empty", "zip-magic-then-zeros", "short-array",
        "missing-array", "missing-meta", "bad-json", "wrong-tag", "bad-activation", "bad-param",
    ],
)  # fmt: skip
def test_damaged_files_give_clear_errors(damage, match, density):
    with pytest.raises(ValueError, match=match):
        sklfm.load(io.BytesIO(damage(_model_file(density))))


def _drop_key(node, key):
    """Remove `key` from every dict in a JSON tree."""
    if isinstance(node, dict):
        node.pop(key, None)
        for value in node.values():
            _drop_key(value, key)
    elif isinstance(node, list):
        for value in node:
            _drop_key(value, key)


def test_typed_table_model_of_an_earlier_encoding_is_refused(df):
    # A file from before the copula map: its table encoder has no knots.
    typed = df.assign(kind=pd.Categorical(np.where(df["width"] > 0, "a", "b")))
    model = LocalFlowMatching(**TINY).fit(typed)
    data = _edit_meta(_model_file(model), lambda meta: _drop_key(meta, "knots_x_"))
    with pytest.raises(ValueError, match=r"TabularEncoder lacks \['knots_x_'\].*Refit"):
        sklfm.load(io.BytesIO(data))


def test_flipped_byte_is_detected(density):
    data = bytearray(_model_file(density))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("meta.json")
    data[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF  # inside meta.json's data
    with pytest.raises(ValueError, match="not a valid sklfm model file"):
        sklfm.load(io.BytesIO(bytes(data)))


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        sklfm.load(tmp_path / "absent.sklfm")


def test_newer_format_version_is_refused(density):
    data = _edit_meta(_model_file(density), lambda meta: meta.update(format_version=2))
    with pytest.raises(ValueError, match=r"newer sklfm \(model format version 2; this sklfm reads"):
        sklfm.load(io.BytesIO(data))
    state = density.__getstate__()
    state["sklfm_state_format"] = 2
    with pytest.raises(ValueError, match="newer sklfm"):
        LocalFlowMatching().__setstate__(state)
