"""Helpers every stage shares, one module per concern (import from the module, not from here):

- :mod:`~hybridtmd._utils.files`: atomic writes, file names as text and back, guarded JSON parsing;
- :mod:`~hybridtmd._utils.digests`: SHA-256 content keys of arrays and files;
- :mod:`~hybridtmd._utils.progress`: the fit listener and the one progress bar;
- :mod:`~hybridtmd._utils.devices`: the torch device of the CNN stages;
- :mod:`~hybridtmd._utils.params`: the one parameter-validation mechanism;
- :mod:`~hybridtmd._utils.user_warnings`: warnings attributed to the user's line.
"""
