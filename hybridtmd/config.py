"""One configuration object for a whole run, readable from TOML (TopoStats-style).

A config file has one table per stage; every key is optional and defaults are the library's::

    [level]                      # hybridtmd.preprocess.LevelConfig
    row_alignment = "median_diff"
    background_order = 1
    pixel_size_nm = 10.0

    [descriptors]                # families + hybridtmd.descriptors.DescriptorConfig; enabled = false drops them
    families = ["paper", "areal", "grains"]
    blob_method = "fast"
    channels = ["height", "phase"]   # multichannel AFM: height gets `families`, phase areal/spectral/texture
    # or per channel: channels = {height = ["paper", "areal"], phase = ["areal", "texture"]}

    [embeddings]                 # hybridtmd.embeddings.CNNEmbedder options; enabled = false drops them
    backbone = "efficientnet_lite0"
    tta = "d4"

    [model]                      # hybridtmd.model.HybridClassifier options
    calibration = "temperature"
    ood_quantile = 0.99

    [model.xgboost]              # overrides of the default XGBoost head (hybridtmd.model.default_head)
    n_estimators = 600

Every table is parsed and checked here, when the file is read: an unknown key or a value out of
range is a :class:`ConfigError` naming the file, the table and the key. The values are checked
against the constraints of the object they configure (``LevelConfig``, ``DescriptorConfig``,
``CNNEmbedder._parameter_constraints``, :data:`MODEL_OPTIONS` of ``HybridClassifier``), so the
message is the one that object gives (:func:`hybridtmd._utils.params.check_params`); nothing is built.
(Whether an embedder's backbone and weights file exist is checked when the model is built.)
"""

from __future__ import annotations

import numbers
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._utils.params import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, Interval, Options, check_params
from .descriptors import DescriptorConfig
from .errors import HybridTMDError
from .preprocess import LevelConfig

SECTIONS = ("level", "descriptors", "embeddings", "model")

_INT = numbers.Integral
_SEED = [Interval(_INT, 0, None), None]
_THREADS = [Interval(_INT, None, None), None]

#: The [model] keys and what each accepts; :class:`hybridtmd.model.HybridClassifier` checks its
#: parameters against the same constraints at ``fit`` (its ``classifier`` may also be an estimator).
MODEL_OPTIONS: dict[str, list[Any]] = {
    "classifier": [Options(("auto", "xgboost", "svm", "stack", "discriminant")), None],
    "class_weight": [Options(("balanced",)), Mapping, None],
    "calibration": [Options(("temperature",)), None],
    "calibration_folds": [Interval(_INT, 2, None)],  # one fold has no held-out predictions
    "selection_folds": [Interval(_INT, 2, None)],
    "few_shot": [Options(("discriminant",)), None],
    "ood_neighbors": [Interval(_INT, 1, None), None],
    "ood_quantile": [FRACTION],
    "conformal": [Options(("marginal", "class")), None],
    "random_state": _SEED,
    "n_jobs": _THREADS,
}

#: Value checks of the [model.xgboost] keys that have a range; any other XGBClassifier parameter
#: is accepted as given (XGBoost checks it when fitting).
XGBOOST_OPTIONS: dict[str, list[Any]] = {
    "n_estimators": [COUNT],
    "learning_rate": [POSITIVE],
    "max_depth": [Interval(_INT, 0, None)],
    "max_leaves": [Interval(_INT, 0, None)],
    "max_bin": [Interval(_INT, 2, None)],
    **dict.fromkeys(("min_child_weight", "gamma", "reg_lambda", "reg_alpha"), [NON_NEGATIVE]),
    **dict.fromkeys(("subsample", "colsample_bytree", "colsample_bylevel", "colsample_bynode"), [FRACTION]),
    "tree_method": [Options(("hist", "approx", "exact", "auto"))],
    "random_state": _SEED,
    "n_jobs": _THREADS,
}


class ConfigError(HybridTMDError, ValueError):
    """A configuration file or value is invalid."""


@dataclass(frozen=True)
class DescriptorsSection:
    """[descriptors]: whether the physical half is used, its families and their settings."""

    enabled: bool = True
    families: str | tuple[str, ...] | None = "default"
    config: DescriptorConfig = field(default_factory=DescriptorConfig)
    #: multichannel AFM: channel -> selection of families (``DescriptorExtractor(channels=...)``);
    #: None: the height map alone
    channels: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        families = list(self.families) if isinstance(self.families, tuple) else self.families
        channels = {} if self.channels is None else {"channels": dict(self.channels)}
        return {"enabled": self.enabled, "families": families, **channels, **self.config.to_dict()}


@dataclass(frozen=True)
class EmbeddingsSection:
    """[embeddings]: whether the latent half is used, and the CNNEmbedder keyword arguments."""

    enabled: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, **self.options}


@dataclass(frozen=True)
class ModelSection:
    """[model]: HybridClassifier keyword arguments (only those given) and [model.xgboost], the
    overrides of the default XGBoost head (None: no table)."""

    options: Mapping[str, Any] = field(default_factory=dict)
    xgboost: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.options, **({} if self.xgboost is None else {"xgboost": dict(self.xgboost)})}


@dataclass(frozen=True)
class Config:
    """Settings of every stage of a hybridtmd run, one checked section per stage
    (:meth:`hybridtmd.model.HybridClassifier.from_config` builds the classifier they describe)."""

    level: LevelConfig = field(default_factory=LevelConfig)
    descriptors: DescriptorsSection = field(default_factory=DescriptorsSection)
    embeddings: EmbeddingsSection = field(default_factory=EmbeddingsSection)
    model: ModelSection = field(default_factory=ModelSection)
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level.to_dict(), "descriptors": self.descriptors.to_dict(),
                "embeddings": self.embeddings.to_dict(), "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<dict>") -> Config:
        """The checked config of a parsed TOML document; :class:`ConfigError` names ``source``,
        the table and the key of the first problem."""
        unknown = set(values) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
        for name in SECTIONS:
            if not isinstance(values.get(name, {}), dict):
                raise ConfigError(f"{source}: [{name}] must be a table")
        return cls(level=_parse(source, "level", LevelConfig.from_dict, values.get("level", {})),
                   descriptors=_parse(source, "descriptors", _descriptors, values.get("descriptors", {})),
                   embeddings=_parse(source, "embeddings", _embeddings, values.get("embeddings", {})),
                   model=_model_section(source, dict(values.get("model", {}))), source=source)


def _parse(source: str, name: str, parser: Any, values: dict[str, Any]) -> Any:
    """``parser(values)``, its TypeError/ValueError a :class:`ConfigError` naming file and table."""
    try:
        return parser(dict(values))
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: [{name}] {exc}") from None


def _enabled(values: dict[str, Any]) -> bool:
    enabled = values.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be true or false, not {enabled!r}")
    return enabled


def _descriptors(values: dict[str, Any]) -> DescriptorsSection:
    from .descriptors import DescriptorExtractor

    enabled = _enabled(values)
    families = values.pop("families", "default")
    families = tuple(families) if isinstance(families, list) else families
    channels = _channels(values.pop("channels", None), families)
    # unknown family names, and height-only families asked of another channel, fail now
    DescriptorExtractor(families=families, channels=channels).get_feature_names_out()
    return DescriptorsSection(enabled, families, DescriptorConfig.from_dict(values), channels)


def _channels(value: Any, families: Any) -> dict[str, Any] | None:
    """``channels``: a list of channel names (height computes ``families``, the others the
    families that describe any channel), or a table channel -> families."""
    from .descriptors import channel_selections
    from .descriptors.extract import is_channel_selection

    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return channel_selections(value, list(families) if isinstance(families, tuple) else families)
    if not isinstance(value, dict):
        raise ValueError(f"channels must be a list of channel names or a table channel -> families, not {value!r}")
    channels = {str(k).casefold(): v for k, v in value.items()}
    if not is_channel_selection(channels):
        raise ValueError("channels: keys must be channel names (identifiers without '__') and values a family "
                         f"name or a list of them, got {value!r}")
    return channels


def _embeddings(values: dict[str, Any]) -> EmbeddingsSection:
    from .embeddings import CNNEmbedder

    enabled = _enabled(values)
    check_keys(values, CNNEmbedder().get_params(), "CNNEmbedder option")
    CNNEmbedder.check_options(values)  # the embedder's own checks; no backbone is resolved
    return EmbeddingsSection(enabled, values)


def _model_section(source: str, values: dict[str, Any]) -> ModelSection:
    xgboost = values.pop("xgboost", None)
    if xgboost is not None and not isinstance(xgboost, dict):
        raise ConfigError(f"{source}: [model.xgboost] must be a table")
    return ModelSection(_parse(source, "model", _model_options, values),
                        None if xgboost is None else _parse(source, "model.xgboost", _xgboost_options, xgboost))


def _model_options(values: dict[str, Any]) -> dict[str, Any]:
    check_keys(values, MODEL_OPTIONS, "model option")
    check_params(values, MODEL_OPTIONS, "HybridClassifier")  # the class checks the same constraints at fit
    return values


def _xgboost_options(values: dict[str, Any]) -> dict[str, Any]:
    from xgboost import XGBClassifier

    check_keys(values, XGBClassifier().get_params(), "XGBoost option")
    check_params(values, XGBOOST_OPTIONS, "XGBClassifier")
    return values


def check_keys(values: Mapping[str, Any], known: Any, what: str) -> None:
    """ValueError naming the first key of ``values`` that is not in ``known``."""
    for key in values:
        if key not in known:
            raise ValueError(f"unknown {what} {key!r}; known: {', '.join(sorted(known))}")


def load_config(path: str | Path | None) -> Config:
    """Read a TOML config file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"{path}: not valid TOML (nested too deeply to parse)") from None
    except OSError as exc:  # a folder, no permission...
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    return Config.from_dict(values, source=str(path))
