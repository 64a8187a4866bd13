"""Copy one byte range of a local file out of a short-lived mmap.

Both local readers load tensors through this one function, so memory stays at *one tensor*
whatever the file size: only the pages of the range are mapped, only while copying, and
they are unmapped right after (a long-lived whole-file mapping would keep every page ever
touched resident, growing RSS to the file size over a full read).
"""

from __future__ import annotations

import mmap
import os

import numpy as np
import torch

from ..dtypes import new_byte_tensor
from ..errors import MalformedCheckpoint

__all__ = ["read_range"]


def read_range(path: str, start: int, n: int, *, file_size: int | None = None,
               what: str = "range") -> torch.Tensor:
    """Bytes ``[start, start + n)`` of ``path`` as a fresh 1-D ``uint8`` tensor.

    Args:
        file_size: the size seen when the file was validated; a file that changed size since
            is refused rather than mapped (touching a page past a shrunken end is a SIGBUS).
        what: names the range in error messages (``tensor 'w'``).

    Raises:
        MalformedCheckpoint: the file changed size or is shorter than the range.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if file_size is not None and size != file_size:
            raise MalformedCheckpoint(
                f"{path}: file size changed from {file_size} to {size} since its header was read"
            )
        if start < 0 or start + n > size:
            raise MalformedCheckpoint(
                f"{path}: {what} needs bytes [{start}, {start + n}) but the file has {size}"
            )
        raw = new_byte_tensor(n)
        if n:
            base = start - start % mmap.ALLOCATIONGRANULARITY
            mm = mmap.mmap(f.fileno(), start + n - base, offset=base, access=mmap.ACCESS_READ)
            try:
                src = np.frombuffer(mm, dtype=np.uint8, count=n, offset=start - base)
                raw.numpy()[:] = src
                del src
            finally:
                mm.close()
    return raw
