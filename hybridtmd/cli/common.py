"""What every command shares: the Typer app, the consoles, one-line error reporting, the option
types, and reading a dataset or a list of files from the command line.

Batch commands never stop at a bad file: they process the good ones, then list every bad file
with its reason. The exit code is 0 when all files worked, 1 when some were skipped (the others
are still processed and written), 2 on usage errors.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .._utils.params import COUNT, POSITIVE, Check, Options, unmet
from .._version import __version__
from ..errors import HybridTMDError
from .messages import (
    console,
    fail,
    report_errors,
    warn_line,
)

app = typer.Typer(
    name="hybridtmd",
    help="Explainable classification of TMD films from AFM height maps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def reflow(doc: str | None) -> str:
    """A docstring as help text: paragraphs kept, the line breaks inside a paragraph removed (the
    terminal wraps them; kept breaks would cut sentences mid-line at other widths)."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(doc or ""))
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def command(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as the command ``name`` with its docstring reflowed as help."""
    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        return app.command(name, help=reflow(function.__doc__))(function)

    return register


def print_version(value: bool) -> None:
    if value:
        console.print(f"hybridtmd {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=print_version, is_eager=True)
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the file readers' own log output.")] = False,
) -> None:
    """Explainable classification of TMD films from AFM height maps."""
    from ..io.limits import max_pixels, read_timeout_s, set_third_party_logging

    set_third_party_logging(verbose)
    try:  # a bad limit in the environment is the run's error, not every file's reason
        max_pixels(), read_timeout_s()
    except ValueError as exc:
        fail(f"environment: {exc}")
    warnings.showwarning = show_warning_line


def show_warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
    """Warnings of a command as ``warning: <message>`` lines (Python's default format names a
    source line inside typer, which means nothing to the user)."""
    warn_line(str(message))


CONFIG_HELP = "TOML config with \\[level] \\[descriptors] \\[embeddings] \\[model] tables."
LEVEL_CONFIG_HELP = "TOML config with a \\[level] table."
# options shared by several commands
LabelledDataset = Annotated[Path, typer.Argument(help="Labelled dataset folder or manifest CSV.")]
ConfigOption = Annotated[Path | None, typer.Option(help=CONFIG_HELP)]
LevelConfigOption = Annotated[Path | None, typer.Option("--config", help=LEVEL_CONFIG_HELP)]
FoldsOption = Annotated[int, typer.Option(min=2, help="StratifiedGroupKFold folds (grouped by sample), at least 2.")]
RepeatsOption = Annotated[int, typer.Option(min=1, help="Repeats with reshuffled folds, at least 1.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display (fits done / total, "
                                           "stage, elapsed and remaining time; one line per stage in a log).")]
ReportFolder = Annotated[Path, typer.Option("-o", "--output", help="Report folder.")]


def parse_pattern(text: str | None) -> str | None:
    """``--pattern``: a regular expression with named groups label and group, or ``default`` for
    the paper's naming convention (:data:`hybridtmd.io.DEFAULT_FILENAME_PATTERN`)."""
    from ..io.dataset import DEFAULT_FILENAME_PATTERN

    if text is None:
        return None
    if text == "default":
        return DEFAULT_FILENAME_PATTERN
    try:
        regex = re.compile(text)
    except re.error as exc:
        raise typer.BadParameter(f"{text!r} is not a regular expression ({exc})") from None
    if not {"label", "group"} <= set(regex.groupindex):
        raise typer.BadParameter(f"{text!r} needs the named groups (?P<label>...) and (?P<group>...)")
    return text


PatternOption = Annotated[
    Any, typer.Option(parser=parse_pattern, metavar="REGEX",
                      help="File-name regex with (?P<label>) and (?P<group>), or 'default': the paper's "
                           "<x>_<MATERIAL>_<x>_<SAMPLE>_... convention.")]



def parse_pixel_size(text: str | None) -> tuple[float, float] | None:
    """``--pixel-size-nm``: one positive number (square pixels) or ``x,y``, in nm."""
    if text is None or isinstance(text, tuple):
        return text
    try:
        values = [float(v) for v in str(text).replace(";", ",").split(",")]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number or x,y pair in nm (e.g. 9.77 or 9.77,9.8)") from None
    if len(values) not in (1, 2):
        raise typer.BadParameter(f"{text!r}: give one or two positive numbers in nm (e.g. 9.77 or 9.77,9.8)")
    return (check_option(values[0], [POSITIVE]), check_option(values[-1], [POSITIVE]))


def parse_channel(text: str | None) -> str | int | None:
    """``--channel``: an index (0, 1...) or a name (as the file writes it, or canonical)."""
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        raise typer.BadParameter("give a channel index or name (see `hybridtmd info FILE`)")
    return int(text) if text.isdigit() else text


def parse_z_unit(text: str | None) -> str | None:
    """``--z-unit``: a length unit."""
    from ..io.image import is_length_unit

    if text is not None and not is_length_unit(text):
        raise typer.BadParameter(f"{text!r} is not a length unit (m, mm, um, nm, A, pm)")
    return text


def parse_low_data(text: str | None) -> list[int] | None:
    """``--low-data``: comma-separated positive training caps per class, e.g. 64,32,16,8."""
    if text is None or isinstance(text, list):
        return text
    try:
        caps = [int(c) for c in str(text).split(",") if c.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give comma-separated whole numbers, e.g. 64,32,16,8") from None
    if not caps:
        raise typer.BadParameter(f"{text!r}: give comma-separated whole numbers, e.g. 64,32,16,8")
    return [check_option(cap, [COUNT]) for cap in caps]


PixelSizeOption = Annotated[
    Any, typer.Option(parser=parse_pixel_size, metavar="NM|X,Y",
                      help="Pixel size in nm, one value or x,y (overrides the file; needed for plain TIFF, PNG).")]
ChannelOption = Annotated[
    Any, typer.Option(parser=parse_channel, metavar="NAME|INDEX",
                      help="Channel to read (index or name, see `hybridtmd info`); default: the topography channel.")]
ZUnitOption = Annotated[
    Any, typer.Option(parser=parse_z_unit, metavar="UNIT", help="Length unit of stored heights when the file does "
                                                                "not say (m, um, nm, A); one that contradicts the file "
                                                                "is used with a warning.")]


def parse_z_scale(text: str | None) -> float | None:
    """``--z-scale``: a positive number of nm per stored count."""
    if text is None or isinstance(text, float):
        return text
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number (nm per count)") from None
    return check_option(value, [POSITIVE])


ZScaleOption = Annotated[
    Any, typer.Option(parser=parse_z_scale, metavar="NM", help="nm per stored count (PNG/JPEG grey levels, "
                                                               "integer TIFF).")]
ChannelsOption = Annotated[
    str | None, typer.Option("--channels", metavar="NAMES", help=(
        "Multichannel AFM: comma-separated channels, e.g. height,phase (keys of `hybridtmd info`): height gets "
        "the descriptor families, other channels areal, spectral and texture; columns <channel>__<name>. A file "
        "lacking one of them is reported and skipped."))]


def parse_channels(text: str | None, height_families: Any = "default") -> dict[str, Any] | None:
    """``--channels height,phase`` -> the ``channels`` parameter of the descriptor extractor and
    of HybridFeatures (:func:`hybridtmd.descriptors.channel_selections`); a one-line error
    otherwise."""
    from ..descriptors import channel_selections

    if text is None:
        return None
    families = list(height_families) if isinstance(height_families, tuple) else height_families
    try:
        return channel_selections(text.split(","), families)
    except ValueError as exc:
        fail(f"--channels {text!r}: {exc}")


LowDataOption = Annotated[
    Any, typer.Option(parser=parse_low_data, metavar="CAPS", help="Training caps per class, e.g. 64,32,16,8.")]


def check_option(value: Any, allowed: list[Any]) -> Any:
    """``value`` when it satisfies one of the constraints ``allowed`` (those of the estimators'
    ``_parameter_constraints``, :func:`hybridtmd._utils.params.unmet`), else a usage error in their words."""
    if why := unmet(value, allowed):
        raise typer.BadParameter(why)
    return value


def check_finite(value: float) -> float:
    """A number option that must be finite: click's ranges let ``nan`` and ``inf`` through."""
    return check_option(value, [Check(math.isfinite, "a finite number"), None])


def check_n_jobs(value: int) -> int:
    """``--n-jobs``: workers >= 1, or -1 for all cores (joblib's convention)."""
    return check_option(value, [COUNT, Options((-1,))])


NJobsOption = Annotated[int, typer.Option(callback=check_n_jobs, help="Parallel workers (-1 = all cores).")]
CacheDirOption = Annotated[Path | None, typer.Option(help="Embedding cache folder (reruns load vectors).")]
ModelDirArgument = Annotated[Path, typer.Argument(help="Model directory written by `hybridtmd train`.")]


def read_options(channel: str | int | None = None, pixel_size_nm: Any = None, z_unit: str | None = None,
                 z_scale: float | None = None) -> dict[str, Any]:
    """The reading keywords of :func:`hybridtmd.io.load_image` from the shared options."""
    return {"channel": channel, "pixel_size_nm": pixel_size_nm, "z_unit": z_unit, "z_scale": z_scale}


def read_dataset(source: Path, pattern: str | None = None, options: dict[str, Any] | None = None) -> Any:
    """The dataset at ``source`` (folder or manifest), or a one-line error and exit 2; its
    warnings (labels merged, rows repeated) are printed, one line each."""
    from ..io import load_dataset
    from ..io.dataset import DEFAULT_FILENAME_PATTERN

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = load_dataset(source, pattern=pattern or DEFAULT_FILENAME_PATTERN, **(options or {}))
    except (HybridTMDError, ValueError) as exc:
        fail(str(exc))
    for warning in caught:
        if "do not match the name pattern" not in str(warning.message):  # listed as skipped files instead
            warn_line(str(warning.message))
    return dataset


def load_dataset_images(ds: Any, channels: list[str] | None = None) -> Any:
    """``ds.load()`` with its bad files collected and its cross-sample duplicates printed; with
    ``channels`` every item is a mapping channel -> image and a file lacking one is a bad file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ds.load(on_error="skip", progress=len(ds) >= 20, channels=channels)
    for first, second, reason in report.duplicates:
        warn_line(f"{second}: {reason} ({first}): a train/test leak that grouped folds cannot see")
    return report


def labelled_images(source: Path, pattern: str | None, options: dict[str, Any] | None = None, *,
                    n_folds: int | None = None, channels: list[str] | None = None):
    """Read a labelled dataset: (dataset of the images read, images, labels, groups, paths,
    errors); bad files are collected in ``errors`` as (file, reason), the rest is returned. With
    ``n_folds``, a class with fewer samples than folds is an error before any image is read; with
    ``channels``, images are mappings channel -> image (:func:`load_dataset_images`)."""
    ds = read_dataset(source, pattern, options)
    if n_folds is not None:
        try:
            ds.check_folds(n_folds)
        except ValueError as exc:
            fail(str(exc))
    report = load_dataset_images(ds, channels)
    errors = list(ds.skipped) + list(report.errors)
    if not report.images:
        report_errors(errors)
        fail("no readable image in the dataset", code=1)
    idx = report.indices
    return ds.subset(idx), report.images, ds.labels[idx], ds.groups[idx], [str(ds.paths[i]) for i in idx], errors


def input_manifest(inputs: list[Path]) -> Any:
    """The dataset of a manifest when the inputs are one (a CSV, or a folder holding
    ``manifest.csv``), else None; a manifest that does not parse is a one-line error."""
    from ..io import load_dataset

    if len(inputs) != 1 or not (inputs[0].suffix.lower() == ".csv" or (inputs[0] / "manifest.csv").exists()):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_dataset(inputs[0])
    except HybridTMDError as exc:
        fail(str(exc))


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files to read: a folder gives every file of a readable type in it (names need not follow any
    convention), a manifest CSV its listed files, files themselves."""
    from ..io.files import readable_files

    manifest = input_manifest(inputs)
    if manifest is not None:
        return manifest.paths
    if len(inputs) == 1 and inputs[0].is_dir():
        return readable_files(inputs[0])  # the files the napari plugin's Batch widget finds too
    return list(inputs)


def load_level_config(config: Path | None) -> Any:
    """The ``[level]`` settings of a config file (defaults without one), or an error and exit 2."""
    from ..config import load_config

    try:
        return load_config(config).level
    except HybridTMDError as exc:
        fail(str(exc))


def use_file_backend() -> None:
    """matplotlib on the file-only Agg backend: commands write figures, they never show them."""
    import matplotlib

    matplotlib.use("Agg")


def model_from_config(config: Path | None, cache_dir: Path | None = None, channels: str | None = None) -> Any:
    """The HybridClassifier a config file describes (defaults without one), with ``cache_dir``
    set on its embedder and ``--channels`` (which replaces the config's ``channels``)."""
    from ..config import load_config
    from ..model import HybridClassifier

    try:  # load_config turns a too deeply nested file into a ConfigError itself
        settings = load_config(config)
        model = HybridClassifier.from_config(settings)
    except (HybridTMDError, ValueError) as exc:
        fail(str(exc))
    features = model.features
    if channels is not None:
        if features.descriptors is None:
            fail(f"--channels needs the descriptors ({config}: [descriptors] enabled = false)")
        features.set_params(channels=parse_channels(channels, settings.descriptors.families))
    if features.embedder is not None and getattr(features.embedder, "device", "auto") == "cuda":
        from .._utils.devices import select_device

        try:  # found now, not after the descriptors of every image are computed
            select_device("cuda")
        except ValueError as exc:
            fail(f"{config}: embeddings.device: {exc}")
    if cache_dir is not None and features.embedder is not None:
        features.embedder.set_params(cache_dir=cache_dir)
    return model
