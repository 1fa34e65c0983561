"""Heads in a model directory without pickle: ``classifier.json`` plus arrays for the model's npz.

XGBoost writes its own JSON model; :class:`~hybridtmd.model.heads.KernelSVMHead`,
:class:`~hybridtmd.model.stack.StackHead` and :class:`~hybridtmd.model.discriminant.DiscriminantHead`
write their settings as JSON and their fitted arrays (support vectors, dual coefficients, class
means...) into the model's arrays file, prefixed
:data:`HEAD_ARRAY_PREFIX`. Reading never runs code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.files import atomic_path, json_loads
from ..errors import ModelFileError
from .discriminant import DiscriminantHead
from .heads import KernelSVMHead
from .persistence import write_json
from .stack import StackHead

#: what a model manifest's "head" entry may say
HEAD_KINDS = ("xgboost", "kernel_svm", "stack", "discriminant")
#: the heads saved as settings + arrays, by their manifest kind
STATE_HEADS = {"kernel_svm": KernelSVMHead, "stack": StackHead, "discriminant": DiscriminantHead}
#: prefix of a head's arrays in a model's arrays file
HEAD_ARRAY_PREFIX = "head__"


def save_head(head: Any, path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Write a fitted head's settings to ``path`` (JSON) without pickle; returns its kind (one of
    :data:`HEAD_KINDS`) and the arrays that go with it (saved by the caller). Any head other than
    XGBoost, the kernel SVM, the stack and the discriminant is a :class:`ModelFileError`."""
    from xgboost import XGBClassifier
    from xgboost.core import XGBoostError

    if isinstance(head, XGBClassifier):
        try:
            with atomic_path(path, suffix=".json") as tmp:  # the suffix picks XGBoost's format
                head.save_model(tmp)
        except XGBoostError as exc:  # a full disk: XGBoost's message ends in a C++ stack trace
            raise OSError(f"{path}: XGBoost could not write the model ({xgboost_reason(exc)})") from None
        return "xgboost", {}
    for kind, cls in STATE_HEADS.items():
        if isinstance(head, cls):
            settings, arrays = head.to_state()
            write_json(path, settings)
            return kind, {HEAD_ARRAY_PREFIX + k: v for k, v in arrays.items()}
    raise ModelFileError("only the XGBoost, kernel-SVM, stack and discriminant heads can be saved without pickle, "
                         f"not {type(head).__name__}")


def xgboost_reason(error: Exception) -> str:
    """The reason in an XGBoost error, on one line: its first line without the time stamp, the
    C++ source position and the name of the failed check (the stack trace below it means
    nothing to the user)."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    first = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", first)
    return re.sub(r"^Check failed:[^:]*:\s*", "", first).strip()


def load_head(kind: str, path: Path, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Any:
    """The head :func:`save_head` wrote at ``path``: ``kind`` from the manifest, ``arrays`` the
    model's arrays file, ``params`` the XGBoost constructor settings the manifest kept.
    :class:`ModelFileError` naming ``path`` when it is not a readable head of that kind."""
    if kind == "xgboost":
        from xgboost import XGBClassifier

        head = XGBClassifier(**params)
        try:
            head.load_model(path)
        except Exception as exc:  # XGBoost raises its own error class for a malformed file
            raise ModelFileError(f"{path}: not a readable XGBoost model ({exc})") from None
        return head
    cls = STATE_HEADS[kind]
    try:
        settings = json_loads(path.read_text(encoding="utf-8"))
        return cls.from_state(settings, {k[len(HEAD_ARRAY_PREFIX):]: v for k, v in arrays.items()
                                         if k.startswith(HEAD_ARRAY_PREFIX)})
    except (UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        what = "kernel-SVM" if kind == "kernel_svm" else kind
        raise ModelFileError(f"{path}: not a readable {what} head ({type(exc).__name__}: {exc})") from None
