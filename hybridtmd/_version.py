"""The version of hybridtmd: the single source read by the package (``hybridtmd.__version__``),
the saved-model and feature-store manifests, ``hybridtmd --version`` and the build (pyproject's
dynamic version, setuptools ``attr``). A leaf module: it imports nothing, so any stage may
import it without an arrow back up to the top-level package. Release notes: CHANGELOG.md."""

__version__ = "0.2.0"
