"""Minimal, dependency-light readers shared by the Python baselines.

A features bundle (and any mprm safetensors output) is a safetensors file: an 8-byte
little-endian header length, a JSON header, then raw tensors. Reading the header ourselves lets
NumPy memory-map the feature matrix in place, exactly as mprm does, with no extra package.
"""

import json
import struct

import numpy as np

_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32,
           "U8": np.uint8, "BF16": np.uint16}


def open_tensors(path):
    """Returns {name: (dtype_name, shape, memmap view)} and the metadata dict."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        start, end = t["data_offsets"]
        dt = _DTYPES[t["dtype"]]
        count = (end - start) // np.dtype(dt).itemsize
        arr = np.memmap(path, dtype=dt, mode="r", offset=base + start, shape=(count,))
        out[name] = (t["dtype"], tuple(t["shape"]), arr.reshape(t["shape"]) if t["shape"] else arr)
    return out, meta


def widen(dtype_name, arr):
    """f32 view of a tensor; bf16 (stored as uint16) is widened by a 16-bit shift."""
    if dtype_name == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(arr, dtype=np.float32)


def read_bundle(path):
    t, meta = open_tensors(path)
    feats_dtype, _, feats = t["features"]
    return {
        "features": feats, "features_dtype": feats_dtype,
        "offsets": np.asarray(t["offsets"][2], dtype=np.int64),
        "mc_scores": np.asarray(t["mc_scores"][2], dtype=np.float32),
        "w_star": np.asarray(t["w_star"][2], dtype=np.float32) if "w_star" in t else None,
        "b_star": float(t["b_star"][2][0]) if "b_star" in t else None,
        "meta": meta,
    }


def read_columns(path):
    """A table written by `mprm gradnorm --out X.safetensors`: {column: float64 array}."""
    t, _ = open_tensors(path)
    return {k: np.asarray(v[2], dtype=np.float64) for k, v in t.items() if len(v[1]) == 1}
