"""The one place that picks the device and converts between numpy and torch."""

import numpy as np
import torch
from sklearn.utils import check_random_state

# Training runs in float32; exact scoring and the transforms in float64, so
# that a row's value does not depend on the batch it is computed in.
TRAIN_DTYPE = torch.float32
TRAIN_DTYPE_NUMPY = np.float32
EXACT_DTYPE = torch.float64

Device = torch.device


def resolve_device(device):
    """'auto' is CUDA when available, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available.")
    return resolved


def is_available(device):
    """Whether tensors can be placed on `device` (a torch.device) in this process."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    backend = getattr(torch.backends, device.type, None)
    return bool(backend is not None and backend.is_available())


def make_generator(random_state, device):
    """A torch generator on `device`, seeded from a scikit-learn random_state."""
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    return torch.Generator(device=device).manual_seed(int(seed))


def to_tensor(X, device, dtype):
    return torch.tensor(np.asarray(X), dtype=dtype, device=device)


def to_numpy(tensor):
    return tensor.detach().to("cpu", torch.float64).numpy()
