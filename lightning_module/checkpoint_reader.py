"""Reading a PyTorch checkpoint's plain data and tensors as numpy arrays, without torch and without running code.

A ``.ckpt`` file written by ``torch.save`` is a zip archive: ``<name>/data.pkl``, a pickle of the checkpoint's
dicts, lists and numbers in which every tensor is a call of ``torch._utils._rebuild_tensor_v2`` on a storage named
by a persistent id, and ``<name>/data/<key>``, the raw bytes of every storage. :func:`read_checkpoint` unpickles
``data.pkl`` with an unpickler whose ``find_class`` knows only the tensor-rebuild functions, the storage types and
``collections.OrderedDict`` (the "restricting globals" recipe of the :mod:`pickle` documentation, the allowlist
``torch.load(weights_only=True)`` applies to our checkpoints); any other global refuses the file before anything
is built, so a crafted pickle cannot run code. A tensor becomes a :class:`TensorRef`, whose bytes are read only
when :meth:`TensorRef.numpy` is called: predict.py reads the model's weights and leaves the optimizer state unread.

What this reader does not cover (bfloat16 and other dtypes numpy lacks, a big-endian archive, the legacy
non-zip format, any other global) raises :class:`UnreadableCheckpoint`; the caller then loads the file with
``torch.load(weights_only=True)`` instead (:func:`lightning_module.inference.safe_load`), which gives the same
values or the error a user should see.
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any, Union

import numpy as np

#: torch's storage types and the numpy dtype of their elements.
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "LongStorage": np.int64,
    "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnreadableCheckpoint(Exception):
    """The file is not a checkpoint this reader can take (torch.load may still; or it is no checkpoint)."""


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """One storage of the archive, read on first use."""

    def __init__(self, archive: zipfile.ZipFile, entry: str, dtype: np.dtype, numel: int) -> None:
        self.archive, self.entry, self.dtype, self.numel = archive, entry, dtype, numel
        self._values: np.ndarray | None = None

    def values(self) -> np.ndarray:
        if self._values is None:
            try:
                data = self.archive.read(self.entry)
            except KeyError:
                raise UnreadableCheckpoint(f"the storage {self.entry} is missing") from None
            if len(data) != self.numel * self.dtype.itemsize:
                raise UnreadableCheckpoint(f"the storage {self.entry} has {len(data)} bytes, not "
                                           f"{self.numel} x {self.dtype.itemsize}")
            self._values = np.frombuffer(data, self.dtype)
        return self._values


class TensorRef:
    """A tensor of the checkpoint: its dtype, ``shape`` and where its elements lie in a storage."""

    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, int(offset), tuple(shape), tuple(stride)
        self.dtype = storage.dtype

    def numpy(self) -> np.ndarray:
        """The tensor's elements as a new numpy array of its shape."""
        values = self.storage.values()
        if any(size == 0 for size in self.shape):
            return np.zeros(self.shape, self.dtype)
        last = self.offset + sum((size - 1) * step for size, step in zip(self.shape, self.stride))
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= len(values):
            raise UnreadableCheckpoint("a tensor reaches outside its storage")
        view = np.lib.stride_tricks.as_strided(values[self.offset:], self.shape,
                                               [step * self.dtype.itemsize for step in self.stride], writeable=False)
        return np.array(view)

    def __repr__(self) -> str:
        return f"TensorRef({self.dtype}, {self.shape})"


def _rebuild_tensor(storage: _Storage, offset: int, shape: tuple, stride: tuple, *_: Any) -> TensorRef:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])``."""
    return TensorRef(storage, offset, shape, stride)


def _rebuild_parameter(data: TensorRef, *_: Any) -> TensorRef:
    """``torch._utils._rebuild_parameter(data, requires_grad, hooks)``: a Parameter is its data here."""
    return data


_FUNCTIONS = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
              ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
              ("collections", "OrderedDict"): collections.OrderedDict}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _FUNCTIONS:
            return _FUNCTIONS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnreadableCheckpoint(f"it holds {module}.{name}, which this reader does not build")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnreadableCheckpoint(f"an unknown persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            self.storages[key] = _Storage(self.archive, f"{self.prefix}data/{key}", storage_type.dtype, int(numel))
        return self.storages[key]


def read_checkpoint(path: Union[str, Path]) -> Any:
    """The unpickled checkpoint with every tensor a :class:`TensorRef` (the archive stays open while they exist).

    Raises:
        UnreadableCheckpoint: the file is not a zip checkpoint of the kind described above.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise UnreadableCheckpoint(f"not a zip archive ({error})") from None
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(pickles) != 1:
        raise UnreadableCheckpoint("no single <name>/data.pkl in the archive")
    prefix = pickles[0][: -len("data.pkl")]
    names = set(archive.namelist())
    if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
        raise UnreadableCheckpoint("the tensors are big-endian")
    with archive.open(pickles[0]) as file:
        try:
            return _Unpickler(file, archive, prefix).load()
        except UnreadableCheckpoint:
            raise
        except Exception as error:  # a damaged pickle: torch.load says what it is
            raise UnreadableCheckpoint(f"{type(error).__name__}: {error}") from None
