"""hybridtmd's napari plugin (``pip install 'hybridtmd[napari]'``; manifest ``napari.yaml``).

=====================  ===========================================================================
:mod:`.reader`         every format :mod:`hybridtmd.io` reads, one image layer per channel, in nm
:mod:`.layers`         AFM images <-> layer data: pixel size as the layer scale, provenance metadata
:mod:`.classify`       model loading, a layer's model input, predictions, a folder's predictions
:mod:`.explain`        one image's group attribution, top physical drivers and latent maps
:mod:`.widgets`        the Classify and Explain dock widgets (magicgui)
:mod:`.batch`          the Batch widget: a folder -> predictions table, skipped files, CSV
=====================  ===========================================================================

A stage after :mod:`hybridtmd.cli`: nothing in the library imports it, so ``import hybridtmd``
never loads napari or Qt. Only :mod:`.widgets` and :mod:`.batch` import napari and magicgui.
"""
