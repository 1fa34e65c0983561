"""hybridtmd: explainable classification of TMD films from AFM height maps."""

__version__ = "0.1.0"
