"""One configuration object for a whole run, readable from TOML (TopoStats-style).

A config file has one table per stage; every key is optional and defaults are the library's::

    [level]
    row_alignment = "median_diff"
    background_order = 1
    remove_scars = true
    pixel_size_nm = 10.0
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HybridTMDError
from .preprocess import LevelConfig


class ConfigError(HybridTMDError, ValueError):
    """A configuration file or value is invalid."""


@dataclass(frozen=True)
class Config:
    """Settings of every stage of a hybridtmd run."""

    level: LevelConfig = field(default_factory=LevelConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<dict>") -> Config:
        unknown = set(values) - {"level"}
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; known: level")
        try:
            level = LevelConfig.from_dict(values.get("level", {}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: [level] {exc}") from None
        return cls(level=level)


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
    return Config.from_dict(values, source=str(path))
