"""L4: checkpoints of a whole training state, written atomically, read back bit for bit.

A checkpoint is one ``.npz`` file holding every array leaf of the state pytree (networks,
optimizer state, replay buffer, env state, keys, step counter — for every seed at once), any
extra host arrays (the metrics gathered so far) and a JSON header. It is written to a temporary
file in the same folder, flushed to disk, then renamed over the old one (``os.replace`` is
atomic on POSIX), so a process killed at any moment leaves either the previous checkpoint or
the new one — never half a file.

Example:
    >>> checkpoint.save(path, state, extra={"eval_return": ...}, meta={"chunks_done": 3})
    >>> state, extra, meta = checkpoint.load(path, like=state)
"""

from __future__ import annotations

import json
import os
import re
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = ["save", "load", "verify", "fingerprint", "to_host", "AsyncSaver"]

_STATE = "state/"
_EXTRA = "extra/"
_META = "meta.json"


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_host(tree: Any) -> list[np.ndarray]:
    """Copies of every array leaf of ``tree`` as NumPy arrays (typed PRNG keys as their data).

    Copies, not views: the device buffers may be reused by the next compiled call. With
    several processes (``jax.distributed``) the leaves are gathered from every host.
    """
    leaves = [jax.random.key_data(x) if _is_key(x) else x for x in jax.tree.leaves(tree)]
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        leaves = multihost_utils.process_allgather(leaves, tiled=True)
    return [np.array(x, copy=True) for x in leaves]


def fingerprint(tree: Any) -> str:
    """A string naming the structure, shapes and dtypes of ``tree``; two states with the same
    fingerprint can be swapped for each other in a compiled step."""
    leaves, treedef = jax.tree.flatten(tree)
    shapes = [(tuple(x.shape), str(x.dtype)) for x in leaves]
    # static fields may print as "<Env object at 0x7f...>": the address differs per process
    structure = re.sub(r" at 0x[0-9a-fA-F]+", "", str(treedef))
    return json.dumps([structure, shapes])


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    # make the rename itself durable
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _pack(
    leaves: list[np.ndarray], fp: str, extra: dict[str, np.ndarray], meta: dict[str, Any]
) -> dict[str, np.ndarray]:
    arrays = {f"{_STATE}{i:06d}": x for i, x in enumerate(leaves)}
    arrays.update({f"{_EXTRA}{k}": np.asarray(v) for k, v in extra.items()})
    arrays[_META] = np.array(json.dumps({**meta, "fingerprint": fp}))
    return arrays


def save(
    path: str | Path,
    state: Any,
    extra: dict[str, np.ndarray] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write ``state`` (any pytree of arrays), ``extra`` arrays and a JSON-able ``meta`` dict to
    ``path`` atomically (write a temporary file, fsync, rename)."""
    path = Path(path)
    arrays = _pack(to_host(state), fingerprint(state), extra or {}, meta or {})
    if jax.process_index() == 0:
        _write_atomic(path, arrays)


def load(
    path: str | Path, like: Any, sharding: jax.sharding.Sharding | None = None
) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint written by ``save`` into the structure of ``like``.

    Args:
        path: the ``.npz`` file.
        like: a pytree with the same structure, shapes and dtypes (e.g. a fresh state or its
            ``jax.eval_shape``); used as the template.
        sharding: where every leaf goes (default: the first local device). purerl's states
            carry the batch axis first on every leaf, so one sharding fits all.

    Returns:
        ``(state, extra, meta)``.

    Raises:
        ValueError: naming the file, if it cannot be read (truncated, corrupted, not a
            checkpoint) or was written for a different structure (another algorithm, config
            sizes or number of seeds). The file is never changed.
    """
    path = Path(path)
    meta, arrays, extra = _read(path)
    if meta.get("fingerprint") != fingerprint(like):
        raise ValueError(
            f"resume: checkpoint {path} holds a different training state (algorithm, "
            "network/buffer sizes or number of seeds changed)"
        )
    del meta["fingerprint"]
    template, treedef = jax.tree.flatten(like)
    _check_leaves(path, arrays, template)
    leaves = [_from_host(a, t, sharding) for a, t in zip(arrays, template, strict=True)]
    return jax.tree.unflatten(treedef, leaves), extra, meta


def verify(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read the whole checkpoint at ``path`` (every array, so every CRC is checked) without
    building a state — cheap next to a compile, so a damaged file is reported before one.

    Returns:
        ``(meta, extra)`` as ``load`` returns them.

    Raises:
        ValueError: naming the file, if it is truncated, corrupted or not a checkpoint.
    """
    meta, _, extra = _read(Path(path))
    return {k: v for k, v in meta.items() if k != "fingerprint"}, extra


def _damaged(path: Path, what: str) -> ValueError:
    return ValueError(
        f"resume: checkpoint {path} is damaged ({what}); restore it from a copy, or delete it "
        "to train the run again from the start (nothing in the folder was changed)"
    )


def _read(path: Path) -> tuple[dict[str, Any], list[np.ndarray], dict[str, np.ndarray]]:
    """``(meta, state arrays, extra arrays)`` of the file, every array read (so its CRC is
    checked); ``ValueError`` naming the file when any of it cannot be read."""
    try:
        with open(path, "rb") as f:
            start = f.read(4)
        if start != b"PK\x03\x04":  # every .npz is a zip archive
            raise _damaged(path, f"not a zip archive: it starts with {start!r}")
        with np.load(path, allow_pickle=False) as data:
            if _META not in data.files:
                raise _damaged(path, f"no {_META} header: not a purerl checkpoint")
            meta = json.loads(str(data[_META]))
            names = sorted(k for k in data.files if k.startswith(_STATE))
            arrays = [data[k] for k in names]
            extra = {k[len(_EXTRA) :]: data[k] for k in data.files if k.startswith(_EXTRA)}
    except ValueError as error:
        if str(error).startswith("resume:"):
            raise
        raise _damaged(path, f"{type(error).__name__}: {error}") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise _damaged(path, f"{type(error).__name__}: {error}") from None
    if not isinstance(meta, dict):
        raise _damaged(path, f"its {_META} header is a {type(meta).__name__}, not an object")
    return meta, arrays, extra


def _check_leaves(path: Path, arrays: list[np.ndarray], template: list[Any]) -> None:
    """Every stored array has the shape and dtype of its leaf in ``template``."""
    if len(arrays) != len(template):
        raise _damaged(path, f"{len(arrays)} state arrays, the state has {len(template)}")
    for i, (a, t) in enumerate(zip(arrays, template, strict=True)):
        like = jax.eval_shape(jax.random.key_data, t) if _is_key(t) else t
        if a.shape != tuple(like.shape) or a.dtype != like.dtype:
            raise _damaged(
                path,
                f"state array {i} is {a.dtype}{list(a.shape)}, expected "
                f"{like.dtype}{list(like.shape)}",
            )


def _from_host(array: np.ndarray, like: Any, sharding: Any) -> jax.Array:
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    if _is_key(like):
        data = jax.make_array_from_callback(array.shape, sharding, lambda i: array[i])
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(like))
    return jax.make_array_from_callback(array.shape, sharding, lambda i: array[i])


class AsyncSaver:
    """Writes checkpoints on a background thread so training goes on meanwhile.

    ``submit`` copies the state to host memory right away (so the caller may hand the device
    buffers to the next step) and returns; the write and rename happen on the thread. At most
    one write is in flight: a new ``submit`` first waits for the previous write. ``wait``
    blocks until the last write is on disk and re-raises its error, if any.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(
        self, path: str | Path, state: Any, extra: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> None:
        """Snapshot ``state`` now; write it to ``path`` in the background."""
        self.wait()
        arrays = _pack(to_host(state), fingerprint(state), extra, meta)
        if jax.process_index() != 0:
            return

        def work() -> None:
            try:
                _write_atomic(Path(path), arrays)
            except BaseException as error:  # noqa: BLE001 (re-raised by wait)
                self._error = error

        self._thread = threading.Thread(target=work, name="purerl-checkpoint", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        """Block until the pending write (if any) finished; re-raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
