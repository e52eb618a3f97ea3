"""The safe predictor file: one zip that rebuilds a Predictor's head and domain without pickle.

Format (a zip): ``predictor.json`` (all metadata: backbone name/model/weights sha256,
depths, head class and parameters, target name/units/transform, training-set size, seeds,
package versions, selection curve), ``arrays.npz`` (scalers, linear/MLP/MODNet weights, the
applicability-domain reference set; read with ``allow_pickle=False``) and ``blobs/`` (the
XGBoost booster in XGBoost's JSON format). Heads that are not one of ours are pickled and
then only load with ``trust=True``.

:mod:`.predictor` builds the metadata and the Predictor; this module only writes and reads
the file, so it does not import the Predictor class.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from contextlib import contextmanager

import numpy as np

from ..files import atomic_output
from ..errors import PredictorFileError, PredictorMismatchError, UntrustedPredictorError
from .base import SAFE_HEADS
from .domain import DomainDistance

FORMAT = "hacknip-ase predictor"
FORMAT_VERSION = 1


def write_predictor_file(path, meta: dict, head, domain: DomainDistance) -> None:
    """Write ``meta`` (``Predictor.metadata()``) with the state of ``head`` and ``domain`` to ``path``.

    One of our heads is stored as JSON + arrays (+ XGBoost's own JSON); any other estimator is
    pickled (it then loads only with ``trust=True``).
    """
    arrays: dict[str, np.ndarray] = {}
    blobs: dict[str, bytes] = {}
    params = head.get_params(deep=False)
    safe = type(head).__name__ in SAFE_HEADS and type(head) is SAFE_HEADS[type(head).__name__]
    try:
        json.dumps(params)
    except TypeError:
        safe = False
    if safe:
        head_meta, head_arrays, blobs = head.get_state()
        arrays.update({f"head/{k}": v for k, v in head_arrays.items()})
        meta["head"] = {"class": type(head).__name__, "params": params, "state": head_meta, "pickled": False}
    else:
        blobs = {"head.pkl": pickle.dumps(head)}
        meta["head"] = {"class": f"{type(head).__module__}.{type(head).__qualname__}", "pickled": True}
    domain_meta, domain_arrays = domain.get_state()
    meta["domain"] = domain_meta
    arrays.update({f"domain/{k}": v for k, v in domain_arrays.items()})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("predictor.json", json.dumps(meta, indent=1))
        bundle.writestr("arrays.npz", buffer.getvalue())
        for key, blob in blobs.items():
            bundle.writestr(f"blobs/{key}", blob)


@contextmanager
def reading(path):
    """Turn what goes wrong while reading ``path`` into a PredictorFileError naming the file
    (the typed mismatch and trust errors pass as they are)."""
    try:
        yield
    except (PredictorMismatchError, UntrustedPredictorError):
        raise
    except (OSError, KeyError, ValueError, TypeError, AttributeError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        raise PredictorFileError(f"{path} is not a readable hacknip-ase predictor file: "
                                 f"{type(exc).__name__}: {exc}") from exc


def read_predictor_file(path, trust: bool) -> tuple[dict, object, DomainDistance]:
    """(metadata, rebuilt head, domain) of a predictor file; a pickled head needs ``trust``."""
    try:
        bundle = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PredictorFileError(f"{path} is not a hacknip-ase predictor file: {exc}") from exc
    with bundle:
        try:
            meta = json.loads(bundle.read("predictor.json"))
        except (KeyError, ValueError) as exc:
            raise PredictorFileError(f"{path} is not a hacknip-ase predictor file: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            version = meta.get("format_version") if isinstance(meta, dict) else None
            raise PredictorFileError(f"{path}: unsupported predictor format {found!r} version {version}")
        with np.load(io.BytesIO(bundle.read("arrays.npz")), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        blobs = {name[len("blobs/"):]: bundle.read(name) for name in bundle.namelist() if name.startswith("blobs/")}
    spec = meta["head"]
    if spec["pickled"]:
        if not trust:
            raise UntrustedPredictorError(
                f"{path} holds a pickled head ({spec['class']}); unpickling can run arbitrary code. "
                "Load it with load_predictor(path, trust=True) only if you trust its source.")
        head = pickle.loads(blobs["head.pkl"])
    else:
        cls = SAFE_HEADS.get(spec["class"])
        if cls is None:
            raise PredictorFileError(f"{path}: unknown head class {spec['class']!r}")
        head = cls.from_state(spec["params"], spec["state"],
                              {k[len("head/"):]: v for k, v in arrays.items() if k.startswith("head/")}, blobs)
    domain = DomainDistance.from_state(meta["domain"], {k[len("domain/"):]: v for k, v in arrays.items()
                                                        if k.startswith("domain/")})
    return meta, head, domain
