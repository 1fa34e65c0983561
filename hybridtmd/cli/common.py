"""What every command shares: the Typer app, the consoles, one-line error reporting, the option
types, and reading a dataset or a list of files from the command line.

Batch commands never stop at a bad file: they process the good ones, then list every bad file
with its reason. The exit code is 0 when all files worked, 1 when some were skipped (the others
are still processed and written), 2 on usage errors.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..errors import HybridTMDError

app = typer.Typer(
    name="hybridtmd",
    help="Explainable classification of TMD films from AFM height maps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


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


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: usage, 1: nothing done)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def report_errors(errors: list[tuple[str, str]], what: str = "file") -> None:
    """One line per bad input on stderr, never truncated: ``skipped <file>: <reason>``."""
    if not errors:
        return
    err_console.print(f"[bold yellow]{len(errors)} {what}(s) skipped:[/]")
    for path, reason in errors:
        err_console.print(f"  skipped {escape(str(path))}: {escape(reason)}", soft_wrap=True, highlight=False)


def exit_for(errors: list) -> None:
    """Exit 1 when some files failed (they were reported); the good ones were processed."""
    if errors:
        raise typer.Exit(1)


def print_version(value: bool) -> None:
    if value:
        console.print(f"hybridtmd {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=print_version, is_eager=True)
    ] = False,
) -> None:
    """Explainable classification of TMD films from AFM height maps."""


CONFIG_HELP = "TOML config with \\[level] \\[descriptors] \\[embeddings] \\[model] tables."
LEVEL_CONFIG_HELP = "TOML config with a \\[level] table."
# options shared by several commands
LabelledDataset = Annotated[Path, typer.Argument(help="Labelled dataset folder or manifest CSV.")]
ConfigOption = Annotated[Path | None, typer.Option(help=CONFIG_HELP)]
LevelConfigOption = Annotated[Path | None, typer.Option("--config", help=LEVEL_CONFIG_HELP)]
FoldsOption = Annotated[int, typer.Option(help="StratifiedGroupKFold folds (grouped by sample).")]
RepeatsOption = Annotated[int, typer.Option(help="Repeats with reshuffled folds.")]
ReportFolder = Annotated[Path, typer.Option("-o", "--output", help="Report folder.")]
PatternOption = Annotated[str | None, typer.Option(help="File-name regex with (?P<label>) and (?P<group>).")]
PixelSizeOption = Annotated[float | None, typer.Option(help="Pixel size (nm) for files that lack one.")]
CacheDirOption = Annotated[Path | None, typer.Option(help="Embedding cache folder (reruns load vectors).")]
ModelDirArgument = Annotated[Path, typer.Argument(help="Model directory written by `hybridtmd train`.")]


def read_dataset(source: Path, pattern: str | None = None, pixel_size_nm: float | None = None) -> Any:
    """The dataset at ``source`` (folder or manifest), or a one-line error and exit 2."""
    from ..io import DEFAULT_FILENAME_PATTERN, load_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_dataset(source, pattern=pattern or DEFAULT_FILENAME_PATTERN, pixel_size_nm=pixel_size_nm)
    except (HybridTMDError, ValueError) as exc:
        fail(str(exc))


def labelled_images(source: Path, pattern: str | None, pixel_size_nm: float | None = None):
    """Read a labelled dataset: (dataset, images, labels, groups, paths, errors); bad files are
    collected in ``errors`` as (file, reason), the rest is returned."""
    ds = read_dataset(source, pattern, pixel_size_nm)
    report = ds.load(on_error="skip", progress=len(ds) >= 20)
    errors = list(ds.skipped) + list(report.errors)
    if not report.images:
        report_errors(errors)
        fail("no readable image in the dataset", code=1)
    idx = report.indices
    return ds, report.images, ds.labels[idx], ds.groups[idx], [str(ds.paths[i]) for i in idx], errors


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """One dataset folder/manifest, or a list of files."""
    from ..io import SUPPORTED_SUFFIXES, load_dataset

    if len(inputs) == 1 and (inputs[0].is_dir() or inputs[0].suffix.lower() == ".csv"):
        try:
            return load_dataset(inputs[0]).paths
        except HybridTMDError:
            if inputs[0].is_dir():
                return sorted(p for p in inputs[0].iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES)
            raise
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


def model_from_config(config: Path | None, cache_dir: Path | None = None) -> Any:
    """The HybridClassifier a config file describes (defaults without one), with ``cache_dir``
    set on its embedder."""
    from ..config import load_config
    from ..model import HybridClassifier

    try:
        model = HybridClassifier.from_config(load_config(config))
    except HybridTMDError as exc:
        fail(str(exc))
    features = model.features
    if cache_dir is not None and features.embedder is not None:
        features.embedder.set_params(cache_dir=cache_dir)
    return model
