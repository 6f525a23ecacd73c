"""Saving and loading estimators without pickle, and the state that pickle stores.

A model file (``est.save(path)``, ``sklfm.load(path)``) is one zip archive::

    meta.json          {"format": "sklfm-model", "format_version": 1,
                        "class": "LocalFlowMatching", "versions": {...},
                        "params": <tree>, "attributes": <tree>}
    arrays/<name>.npy  each array and tensor of the trees, as .npy

A tree is JSON. Numbers, strings, booleans, null and lists stand for
themselves; every JSON object is a node ``{"kind": ..., ...}`` of a closed set
of kinds (``_DECODERS``): tuples, dicts, numpy scalars and arrays, tensors, a
torch device, a RandomState, the torch modules of the core, and plain objects
of the classes in ``_plain_classes``. ``attributes`` holds every instance
attribute that is not a parameter, so new fitted state of these kinds is saved
with no change here; a new class needs one entry in ``_plain_classes`` (or a
codec in ``_MODULES``). Arrays are read with ``allow_pickle=False``, and
nothing but these kinds is ever rebuilt, so loading a file never runs code
from it.

Pickle and joblib store the same trees with the arrays inline, so a pickle
holds plain values and CPU arrays rather than torch modules tied to a device;
unpickling (like ``load``) puts the modules on the fitted device when it is
available, else on the CPU with a warning.
"""

import io
import json
import os
import re
import warnings
import zipfile
import zlib

import numpy as np
import sklearn
import torch
from torch import nn

from . import _runtime
from .core import Block, FlowChain, StudentChain, VelocityMLP

FORMAT = "sklfm-model"
FORMAT_VERSION = 1
_STATE_KEY = "sklfm_state_format"
_META = "meta.json"


class _ModelFileError(ValueError):
    """A model file or pickle that is readable but not loadable (its message says why)."""


class InconsistentVersionWarning(UserWarning):
    """A model is loaded with other sklfm or torch versions than it was fitted with.

    Parameters
    ----------
    estimator_name : str
        Class of the loaded estimator.
    original_versions : dict
        Versions recorded when the estimator was fitted.
    current_versions : dict
        Versions of the running process.
    """

    def __init__(self, *, estimator_name, original_versions, current_versions):
        self.estimator_name = estimator_name
        self.original_versions = original_versions
        self.current_versions = current_versions

    def __str__(self):
        changed = ", ".join(
            f"{name} {self.original_versions.get(name)} -> {version}"
            for name, version in self.current_versions.items()
            if self.original_versions.get(name) != version
        )
        return (
            f"{self.estimator_name} was fitted with other versions than the running ones "
            f"({changed}). It may give different results or fail; refit it to be safe."
        )


def versions():
    """The versions recorded at fit and compared when a model is loaded."""
    from . import __version__

    return {"sklfm": __version__, "torch": str(torch.__version__)}


def _library_versions():
    return {**versions(), "scikit-learn": sklearn.__version__, "numpy": np.__version__}


def _estimator_classes():
    from ._density import LocalFlowMatching
    from ._outlier import LocalFlowMatchingOutlierDetector

    return {cls.__name__: cls for cls in (LocalFlowMatching, LocalFlowMatchingOutlierDetector)}


def _plain_classes():
    """Classes rebuilt from their attributes alone (``__new__`` plus ``__dict__``)."""
    from ._conditions import ConditionEncoder
    from ._outlier import _DetectorPreprocessing, _MCDWhitening
    from ._preprocessing import Standardizer
    from ._tabular import TabularEncoder

    classes = (
        Standardizer, _DetectorPreprocessing, _MCDWhitening, TabularEncoder, ConditionEncoder
    )
    return {cls.__name__: cls for cls in classes}


# --- torch modules: each with what rebuilds it ----------------------------------------


def _encode_velocity(net, encode, path):
    return {
        "activation": net.activation,
        "weights": encode(list(net.weights), _child(path, "weights")),
        "biases": encode(list(net.biases), _child(path, "biases")),
    }


def _decode_velocity(node, decode):
    return VelocityMLP.from_parameters(
        decode(node["weights"]), decode(node["biases"]), node["activation"]
    )


def _encode_block(block, encode, path):
    return {"step_size": block.step_size, "net": encode(block.net, _child(path, "net"))}


def _decode_block(node, decode):
    return Block(_expect(decode(node["net"]), VelocityMLP), _expect(node["step_size"], float))


def _encode_chain(chain, encode, path):
    return {"blocks": encode(list(chain.blocks), _child(path, "blocks"))}


def _decode_chain(node, decode):
    return FlowChain([_expect(block, Block) for block in decode(node["blocks"])])


def _encode_students(students, encode, path):
    return {"n_steps": students.n_steps, "nets": encode(list(students.nets), _child(path, "nets"))}


def _decode_students(node, decode):
    nets = [_expect(net, VelocityMLP) for net in decode(node["nets"])]
    n_steps = _expect(node["n_steps"], int)
    if isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"a student's n_steps must be a positive integer, found {n_steps!r}")
    return StudentChain(nets, n_steps)


_MODULES = {
    "velocity_mlp": (VelocityMLP, _encode_velocity, _decode_velocity),
    "block": (Block, _encode_block, _decode_block),
    "flow_chain": (FlowChain, _encode_chain, _decode_chain),
    "student_chain": (StudentChain, _encode_students, _decode_students),
}


def _expect(value, kind):
    if kind is float and value is None:
        return value  # the free block's step size
    if not isinstance(value, kind):
        raise ValueError(f"expected {kind.__name__}, found {type(value).__name__}")
    return value


# --- encoding --------------------------------------------------------------------------


class _Encoder:
    """Turns values into a JSON tree plus a dict of numpy arrays.

    ``strict`` (files): a value of another type raises TypeError. Otherwise
    (pickle) it is kept as it is, in ``objects``, for pickle to store.
    """

    def __init__(self, strict):
        self.strict = strict
        self.arrays = {}
        self.objects = []

    def _array(self, kind, array, path):
        name = "arrays/" + re.sub(r"[^A-Za-z0-9_.-]", "_", path)
        if name + ".npy" in self.arrays:
            name = f"{name}.{len(self.arrays)}"
        self.arrays[name + ".npy"] = array
        return {"kind": kind, "ref": name + ".npy"}

    def __call__(self, value, path):
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return str(value)  # e.g. torch's TorchVersion
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return {"kind": "scalar", "dtype": value.dtype.str, "value": value.item()}
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, list):
            return [self(v, _child(path, i)) for i, v in enumerate(value)]
        if isinstance(value, tuple):
            items = [self(v, _child(path, i)) for i, v in enumerate(value)]
            return {"kind": "tuple", "items": items}
        if isinstance(value, dict) and all(isinstance(key, str) for key in value):
            items = {k: self(v, _child(path, k)) for k, v in value.items()}
            return {"kind": "dict", "items": items}
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            return self._array("array", value, path)
        if isinstance(value, np.ndarray) and all(isinstance(v, str) for v in value.flat):
            # feature_names_in_: an object array of str
            return {"kind": "strings", "shape": list(value.shape), "values": value.ravel().tolist()}
        if isinstance(value, torch.Tensor) and not value.is_complex():
            return self._array("tensor", value.detach().cpu().numpy(), path)
        if isinstance(value, torch.device):
            return {"kind": "device", "value": str(value)}
        if isinstance(value, np.random.RandomState):
            return {"kind": "random_state", "state": self(value.get_state(legacy=True), path)}
        for kind, (cls, encode, _) in _MODULES.items():
            if type(value) is cls:
                return {"kind": kind, **encode(value, self, path)}
        if _plain_classes().get(type(value).__name__) is type(value):
            attributes = self(dict(vars(value)), path)
            return {"kind": "object", "class": type(value).__name__, "attributes": attributes}
        if self.strict:
            raise TypeError(
                f"Cannot save {path} of type {type(value).__name__}: the sklfm model format "
                "stores numbers, strings, arrays, tensors and sklfm's own classes only."
            )
        self.objects.append(value)
        return {"kind": "pickled", "index": len(self.objects) - 1}


def _child(path, key):
    return f"{path}.{key}" if path else str(key)


def _split(estimator, encode):
    """(params, attributes) trees: the constructor's parameters, then every other attribute."""
    names = estimator.get_params(deep=False)
    params = {name: estimator.__dict__[name] for name in names}
    attributes = {k: v for k, v in vars(estimator).items() if k not in names}
    return encode(params, "params"), encode(attributes, "")


# --- decoding --------------------------------------------------------------------------


def _decode_scalar(node, decode):
    dtype = np.dtype(node["dtype"])
    if dtype.kind not in "biuf":
        raise ValueError(f"scalar of dtype {dtype} is not allowed")
    return dtype.type(node["value"])


def _decode_strings(node, decode):
    values = node["values"]
    if not all(isinstance(v, str) for v in values):
        raise ValueError("a string array holds a non-string")
    return np.array(values, dtype=object).reshape(node["shape"])


def _decode_dict(node, decode):
    return {_expect(key, str): decode(value) for key, value in node["items"].items()}


def _decode_object(node, decode):
    cls = _plain_classes().get(node["class"])
    if cls is None:
        raise ValueError(f"class {node['class']!r} is not one that sklfm rebuilds")
    obj = cls.__new__(cls)
    obj.__dict__.update(_expect(decode(node["attributes"]), dict))
    missing = [name for name in getattr(cls, "_required_state", ()) if name not in obj.__dict__]
    if missing:
        raise ValueError(
            f"the stored {node['class']} lacks {missing}: the model was saved by an earlier "
            "sklfm that encoded tables differently. Refit it with this version."
        )
    return obj


def _decode_random_state(node, decode):
    state = np.random.RandomState()
    state.set_state(decode(node["state"]))
    return state


_DECODERS = {
    "scalar": _decode_scalar,
    "tuple": lambda node, decode: tuple(decode(v) for v in node["items"]),
    "dict": _decode_dict,
    "strings": _decode_strings,
    "device": lambda node, decode: torch.device(_expect(node["value"], str)),
    "random_state": _decode_random_state,
    "object": _decode_object,
    **{kind: decoder for kind, (_, _, decoder) in _MODULES.items()},
}


class _Decoder:
    """Rebuilds values from a tree; `read_array(ref)` returns the array stored under ref."""

    def __init__(self, read_array, objects=()):
        self.read_array = read_array
        self.objects = objects

    def __call__(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self(v) for v in node]
        kind = node.get("kind") if isinstance(node, dict) else None
        if kind == "array":
            return self.read_array(node["ref"])
        if kind == "tensor":
            return torch.from_numpy(np.array(self.read_array(node["ref"])))
        if kind == "pickled" and self.objects:
            return self.objects[node["index"]]
        if kind not in _DECODERS:
            raise ValueError(f"unknown entry kind {kind!r}")
        return _DECODERS[kind](node, self)


# --- placing a loaded model ----------------------------------------------------------------


def _to_device(value, device):
    if isinstance(value, (nn.Module, torch.Tensor)):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def _restore(estimator, params, attributes, device):
    """Set the decoded state on `estimator`, warn about versions, move it to its device."""
    estimator.__dict__.update(params)
    estimator.__dict__.update(attributes)
    name = type(estimator).__name__
    recorded = attributes.get("_fit_versions")
    if recorded is not None and recorded != versions():
        warnings.warn(
            InconsistentVersionWarning(
                estimator_name=name, original_versions=recorded, current_versions=versions()
            ),
            stacklevel=3,
        )
    fitted_on = attributes.get("device_")
    if fitted_on is None and device is None:
        return estimator
    target = torch.device(device) if device is not None else fitted_on
    if not _runtime.is_available(target):
        if device is not None:
            raise ValueError(f"device={device!r} was requested but is not available.")
        warnings.warn(
            f"{name} was fitted on {target}, which is not available here; it is loaded "
            "on the CPU. Pass device= to load() to choose.",
            UserWarning,
            stacklevel=3,
        )
        target = torch.device("cpu")
    for key, value in attributes.items():
        estimator.__dict__[key] = _to_device(value, target)
    estimator.device_ = target
    return estimator


# --- pickle ----------------------------------------------------------------------------------


def get_state(estimator):
    """The state pickle stores: trees, CPU arrays, and any value of another type as is."""
    encode = _Encoder(strict=False)
    params, attributes = _split(estimator, encode)
    return {
        _STATE_KEY: FORMAT_VERSION,
        "params": params,
        "attributes": attributes,
        "arrays": encode.arrays,
        "objects": encode.objects,
    }


def set_state(estimator, state):
    """Rebuild an unpickled estimator from `get_state`'s output."""
    version = state.get(_STATE_KEY)
    if version is None:  # a plain __dict__
        estimator.__dict__.update(state)
        return
    _check_format_version(version, "This pickle")
    decode = _Decoder(state["arrays"].__getitem__, state["objects"])
    _restore(estimator, decode(state["params"]), decode(state["attributes"]), device=None)


def _check_format_version(version, what):
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise _ModelFileError(
            f"{what} was written by a newer sklfm (model format version {version!r}; this "
            f"sklfm reads versions up to {FORMAT_VERSION}). Upgrade sklfm to load it."
        )


# --- files -----------------------------------------------------------------------------------


def save(estimator, file):
    """Write `estimator` to `file` (a path or a binary file object) in the safe format."""
    if _estimator_classes().get(type(estimator).__name__) is not type(estimator):
        raise TypeError(
            f"save supports {sorted(_estimator_classes())} only, not {type(estimator).__name__}; "
            "use pickle or joblib for subclasses."
        )
    encode = _Encoder(strict=True)
    params, attributes = _split(estimator, encode)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": type(estimator).__name__,
        "versions": _library_versions(),
        "params": params,
        "attributes": attributes,
    }
    write_atomic(file, lambda f: _write_archive(f, meta, encode.arrays))


def write_atomic(file, write):
    """`write(binary_file)` to a path through a temporary file and a rename, or to a file object.

    A reader (or a process killed mid-write) never sees a partly written file.
    """
    if not isinstance(file, (str, os.PathLike)):
        write(file)
        return
    path = os.fspath(file)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_archive(f, meta, arrays):
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_META, json.dumps(meta, indent=1))
        for name, array in arrays.items():
            with archive.open(name, "w") as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _read_array(archive, ref):
    """A numeric .npy member, refusing object arrays and sizes the member cannot hold."""
    if not isinstance(ref, str) or not ref.startswith("arrays/"):
        raise ValueError(f"bad array reference {ref!r}")
    data = archive.read(ref)
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version not in _NPY_HEADERS:
        raise ValueError(f"{ref} has an unsupported .npy version {version}")
    shape, _, dtype = _NPY_HEADERS[version](stream)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ValueError(f"{ref} has dtype {dtype}; only numeric arrays are read")
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data) - stream.tell():
        raise ValueError(f"{ref} is truncated or has a wrong shape")
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


# Errors that a damaged or hostile file raises while it is read and rebuilt.
_READ_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, EOFError,
    OSError, zipfile.BadZipFile, zlib.error,
)  # fmt: skip


def load(file, *, device=None):
    """Load an estimator written by ``save``.

    Parameters
    ----------
    file : str, path-like or binary file object
        A file written by ``LocalFlowMatching.save`` or
        ``LocalFlowMatchingOutlierDetector.save``.
    device : str or torch.device, default=None
        Where to put the model. None: the device it was fitted on when that is
        available here, else the CPU (with a warning).

    Returns
    -------
    estimator : LocalFlowMatching or LocalFlowMatchingOutlierDetector
        The estimator, fitted if it was saved fitted.

    Notes
    -----
    Loading reads JSON and numeric ``.npy`` arrays only and rebuilds only
    sklfm's own classes: a file never runs code. A file that is not a model
    file, is damaged, or holds anything else raises ValueError.

    Examples
    --------
    >>> import numpy as np, sklfm, tempfile, os
    >>> X = np.random.RandomState(0).normal(size=(100, 2))
    >>> model = sklfm.LocalFlowMatching(max_iter=20, random_state=0).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.sklfm")
    >>> model.save(path)
    >>> loaded = sklfm.load(path)
    >>> bool((loaded.score_samples(X) == model.score_samples(X)).all())
    True
    """
    source = repr(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else "The file"
    f = open(file, "rb") if isinstance(file, (str, os.PathLike)) else file
    try:
        with zipfile.ZipFile(f) as archive:
            meta = _read_meta(archive, source)
            cls = _estimator_classes()[meta["class"]]
            decode = _Decoder(lambda ref: _read_array(archive, ref))
            params, attributes = decode(meta["params"]), decode(meta["attributes"])
            estimator = cls(**_expect(params, dict))
            return _restore(estimator, params, _expect(attributes, dict), device)
    except _ModelFileError:
        raise
    except _READ_ERRORS as exc:
        raise ValueError(
            f"{source} is not a valid sklfm model file (damaged, truncated, or not written "
            f"by sklfm's save): {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if f is not file:
            f.close()


def _read_meta(archive, source):
    try:
        meta = json.loads(archive.read(_META).decode("utf-8"))
    except KeyError:
        raise _ModelFileError(f"{source} is not an sklfm model file (it has no {_META}).")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _ModelFileError(f"{source} is not an sklfm model file (wrong format tag).")
    _check_format_version(meta.get("format_version"), source)
    if meta.get("class") not in _estimator_classes():
        raise _ModelFileError(
            f"{source} holds a {meta.get('class')!r}; sklfm loads only "
            f"{sorted(_estimator_classes())}."
        )
    return meta
