"""hybridtmd: explainable classification of TMD films from AFM height maps.

The public API is imported lazily (PEP 562): ``import hybridtmd`` loads no torch, xgboost, shap
or matplotlib; ``hybridtmd.HybridClassifier`` imports the model stage the first time it is used.

>>> import hybridtmd as ht
>>> images = ht.load_dataset("data/synthetic_tmd")                      # doctest: +SKIP
>>> model = ht.HybridClassifier().fit(images.images, images.labels)     # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

#: Public name -> the stage module that defines it.
_EXPORTS: dict[str, str] = {
    "AFMImage": "hybridtmd.io",
    "load_image": "hybridtmd.io",
    "load_images": "hybridtmd.io",
    "load_dataset": "hybridtmd.io",
    "register_reader": "hybridtmd.io",
    "level": "hybridtmd.preprocess",
    "LevelConfig": "hybridtmd.preprocess",
    "DescriptorExtractor": "hybridtmd.descriptors",
    "list_descriptors": "hybridtmd.descriptors",
    "CNNEmbedder": "hybridtmd.embeddings",
    "HybridFeatures": "hybridtmd.model",
    "HybridClassifier": "hybridtmd.model",
    "load_model": "hybridtmd.model",
    "FineTuneClassifier": "hybridtmd.baseline",
    "explain": "hybridtmd.explanation",
    "evaluate": "hybridtmd.evaluation",
}

__all__ = [  # literal, so static tools read it; a test checks it lists _EXPORTS
    "AFMImage",
    "CNNEmbedder",
    "DescriptorExtractor",
    "FineTuneClassifier",
    "HybridClassifier",
    "HybridFeatures",
    "LevelConfig",
    "__version__",
    "evaluate",
    "explain",
    "level",
    "list_descriptors",
    "load_dataset",
    "load_image",
    "load_images",
    "load_model",
    "register_reader",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hybridtmd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # static analysers and IDEs see the real objects
    from .baseline import FineTuneClassifier
    from .descriptors import DescriptorExtractor, list_descriptors
    from .embeddings import CNNEmbedder
    from .evaluation import evaluate
    from .explanation import explain
    from .io import AFMImage, load_dataset, load_image, load_images, register_reader
    from .model import HybridClassifier, HybridFeatures, load_model
    from .preprocess import LevelConfig, level
