"""The Batch widget: a folder of scans -> predictions table, with progress, the skipped files
and their reasons, and CSV export (the table ``hybridtmd predict FOLDER --alpha`` writes).

The folder's files are :func:`hybridtmd.io.readable_files` (the files ``hybridtmd predict``
finds), predicted by :func:`~hybridtmd.model.predicting.predict_files` in passes of
:data:`~hybridtmd.model.predicting.PASS_SIZE` files: memory holds one pass's images whatever the
folder's size, and a file that cannot be read or predicted is listed with its reason while the
others are predicted.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from magicgui.application import use_app
from magicgui.widgets import FileEdit, ProgressBar, PushButton, Table, TextEdit
from napari.viewer import Viewer

from .._utils.files import atomic_write_csv
from ..io import readable_files
from .classify import IMAGE_ERRORS, predict_folder_files
from .widgets import ModelWidget, table_value


class BatchWidget(ModelWidget):
    """Predict every readable file of a folder."""

    def __init__(self, napari_viewer: Viewer):
        super().__init__(napari_viewer, "Predict folder", sets=True)
        self.folder = FileEdit(mode="d", label="folder")
        self.progress = ProgressBar(value=0, min=0, max=1, label="files")
        self.table = Table(value={"data": [], "columns": []})
        self.skipped = TextEdit(value="", label="skipped")
        self.csv_path = FileEdit(mode="w", label="CSV", filter="*.csv")
        self.export_button = PushButton(text="Export CSV")
        self.insert(1, self.folder)
        self.extend([self.progress, self.table, self.skipped, self.csv_path, self.export_button])
        self.predictions: pd.DataFrame | None = None
        self.run_button.changed.connect(self.predict_folder)
        self.export_button.changed.connect(self.export_csv)

    def predict_folder(self) -> pd.DataFrame | None:
        """Predict the chosen folder; the table (None when the model or folder is unusable)."""
        try:
            model = self.model()
            paths = readable_files(self.folder.value)
        except IMAGE_ERRORS as exc:
            self.say(str(exc))
            return None
        self.progress.max = max(len(paths), 1)
        self.progress.value = 0
        table, skipped, no_sets = predict_folder_files(model, paths, self.alpha.value, progress=self._advance)
        self.predictions = table if not table.empty else None
        self.table.value = table_value(table.set_index("file"))
        self.skipped.value = "\n".join(f"skipped {Path(f).name}: {reason}" for f, reason in skipped)
        n_ood = int(table["out_of_distribution"].sum()) if "out_of_distribution" in table else 0
        self.say(f"predicted {len(table)} of {len(paths)} file(s); {len(skipped)} skipped"
                 + (f"; {n_ood} flagged out of distribution" if n_ood else "") + (f"\n{no_sets}" if no_sets else ""))
        return table

    def _advance(self, files: int) -> None:
        self.progress.value = min(self.progress.value + files, self.progress.max)
        use_app().process_events()  # redraw the bar between passes (the loop runs in the GUI thread)

    def export_csv(self) -> Path | None:
        """Write the predictions to the chosen CSV file, atomically (an existing file is replaced
        whole or not at all); its path (None when there is nothing to write)."""
        if self.predictions is None:
            self.say("predict a folder first")
            return None
        path = Path(self.csv_path.value)
        if path.suffix.lower() != ".csv":
            path = path.with_suffix(".csv")
        try:
            atomic_write_csv(self.predictions, path, index=False)
        except OSError as exc:
            self.say(f"cannot write {path}: {exc.strerror or exc}")
            return None
        self.say(f"wrote {len(self.predictions)} prediction(s) to {path}")
        return path
