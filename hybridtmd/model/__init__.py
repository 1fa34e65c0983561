"""The model stage: physical descriptors ⊕ frozen-CNN embeddings → a classifier head.

=====================  ===========================================================================
:mod:`.columns`        column prefixes (``phys__``, ``latent__``), groups, units, column alignment
:mod:`.features`       :class:`HybridFeatures`: AFM images → one feature table
:mod:`.heads`          the XGBoost head (:func:`default_head`) and :class:`KernelSVMHead`
:mod:`.stack`          :class:`StackHead`: XGBoost + out-of-fold kernel-SVM probabilities
:mod:`.discriminant`   :class:`DiscriminantHead`: shrinkage LDA that learns a class from a few images
:mod:`.continual`      :func:`add_classes`: a fitted model learns new classes without refitting
:mod:`.selection`      ``classifier="auto"``: the head chosen by inner grouped CV
:mod:`.head_files`     heads in a model directory without pickle
:mod:`.schema`         the checks of a saved manifest (types, ranges, consistency)
:mod:`.calibration`    temperature scaling of probabilities
:mod:`.ood`            :class:`NearestNeighborOOD`, the out-of-distribution score
:mod:`.conformal`      prediction sets per image and per sample, calibrated by sample (crepes)
:mod:`.links`          :func:`latent_correlates`: each latent column's physical correlate
:mod:`.classifier`     :class:`HybridClassifier`: fit, predict, save and load
:mod:`.persistence`    model directories without pickle (manifest, SHA-256, arrays)
:mod:`.predicting`     many files: passes of a bounded size, a bad file isolated, a table's sets
=====================  ===========================================================================
"""

from ..errors import ModelFileError
from .classifier import HybridClassifier, load_model
from .columns import (
    LATENT_PREFIX,
    PHYS_PREFIX,
    FeatureMismatchError,
    NonFiniteFeatureError,
    NonNumericFeatureError,
    feature_units,
    latent_table,
)
from .continual import add_classes
from .discriminant import DiscriminantHead
from .features import HybridFeatures
from .heads import KernelSVMHead, default_head
from .links import latent_correlates
from .ood import NearestNeighborOOD
from .selection import HEAD_NAMES
from .stack import StackHead

__all__ = [
    "DiscriminantHead",
    "FeatureMismatchError",
    "HEAD_NAMES",
    "HybridClassifier",
    "HybridFeatures",
    "KernelSVMHead",
    "LATENT_PREFIX",
    "ModelFileError",
    "NearestNeighborOOD",
    "NonFiniteFeatureError",
    "NonNumericFeatureError",
    "PHYS_PREFIX",
    "StackHead",
    "add_classes",
    "default_head",
    "feature_units",
    "latent_correlates",
    "latent_table",
    "load_model",
]
