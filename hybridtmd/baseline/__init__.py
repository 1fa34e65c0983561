"""End-to-end fine-tuning of an ImageNet CNN: the baseline the hybrid classifier is compared with.

:class:`FineTuneClassifier` is a scikit-learn classifier on AFM height maps (sequences of
:class:`~hybridtmd.io.AFMImage`, levelled beforehand, e.g. by
:class:`~hybridtmd.preprocess.Preprocessor`) that trains a pretrained CNN with a small head, as in
Moses et al.'s transfer-learning study of TMD films (repository
``reinhart-group/Transfer-Learning-for-Multi-material-Classification-of-Transition-Metal-Dichalcogenides``,
``codes/utils.py`` and ``Train/``).

Public API
----------
:class:`FineTuneClassifier` (parameters in its docstring):

* ``fit(images, y, groups=None)`` -> self; ``predict(images)`` -> labels;
  ``predict_proba(images)`` -> ``(n, n_classes)`` in the order of ``classes_``;
  ``score(images, y)`` -> accuracy.
* ``fit_continue(images, y, groups=None)`` -> self: the paper's *sequential* modality (below).
* ``save(directory)`` -> Path; ``FineTuneClassifier.load(directory)`` -> fitted classifier.

Module functions: :func:`estimate_flops` (forward FLOPs per image of a network or backbone),
:func:`~hybridtmd.splits.grouped_validation_split` (the train/validation split ``fit`` uses),
:data:`TRAIN_STEP_FLOPS_FACTOR`. The comparison of the hybrid against fine-tuning on identical
folds is :func:`hybridtmd.evaluation.compare`.

Modules: ``network`` (the network, FLOP counts, batches, torch settings), ``training`` (epoch
and validation steps, the frozen-feature cache, early stopping), ``classifier``
(:class:`FineTuneClassifier`, its saved-model format).

Fitted attributes: ``classes_``, ``backbone_used_`` (the backbone actually trained: the requested
one, or the fallback when its weights are absent), ``backbone_weights_id_``, ``input_size_``,
``n_features_`` (backbone feature length), ``device_``, ``model_`` (the ``torch.nn.Module``:
``features`` then ``head``), ``history_`` (one dict per epoch of the last ``fit``/``fit_continue``:
``epoch, train_loss, val_loss, val_accuracy, seconds``; validation entries are None without a
validation set), ``n_epochs_`` (epochs run), ``best_epoch_`` (1-based epoch whose weights were
kept), ``validation_indices_`` (positions in the last training input held out for early
stopping), ``stages_`` (one summary dict per ``fit``/``fit_continue`` call), ``fit_seconds_``,
``flops_per_image_`` (forward FLOPs of the whole network for one image, i.e. prediction cost) and
``fit_flops_`` (approximate FLOPs spent by the last ``fit``/``fit_continue``).

Training recipe (the paper's, with the differences stated)
----------------------------------------------------------
* **Network**: the backbone's global-average-pooled features, then the head
  ``Linear(features, hidden=100) -> ReLU -> Dropout(dropout=0) -> Linear(100, n_classes)``
  (the paper's ``fc``). Backbones come from :mod:`hybridtmd.embeddings` (``resnet18`` ... as in
  the paper; ResNet weights are read from a local file only). When the requested backbone's
  weights are not on this machine and no ``weights`` file was given, the ``fallback`` backbone
  (the offline ``efficientnet_lite0``) is trained instead, a :class:`BackboneFallbackWarning` is
  issued once per process and backbone, and ``backbone_used_`` says so. ``fallback=None`` raises
  :class:`~hybridtmd.embeddings.WeightsNotFoundError` instead.
* **Input**: exactly the frozen-embedding preprocessing (:func:`~hybridtmd.preprocess.normalise_height`
  then :func:`~hybridtmd.embeddings.to_input_tensor`): per-image percentile clipping to [0, 1],
  bilinear resize to ``input_size`` (the backbone's 224 by default), grey repeated to 3 channels,
  ImageNet mean/std. All inputs of a fit are held in memory (about 0.6 MB per image at 224 px).
* **Optimisation**: Adam, ``lr=7.5e-5``, batches of 32, up to 60 epochs, cross-entropy. With
  ``class_weight="balanced"`` each class's loss weight is ``n_train / (n_classes * n_class)`` (the
  paper over-sampled rare classes with a ``WeightedRandomSampler`` instead; same expected
  gradient, less variance). A dict ``{label: weight}`` or None are also accepted.
* **Augmentation** (``augment=True``): each training image is shown as one of the 8 dihedral
  transforms (4 rotations by 90 degrees, optionally mirrored), drawn uniformly per image and
  epoch. The paper used random horizontal and vertical flips; adding the 90-degree rotations is
  physically justified (an AFM scan has no preferred in-plane orientation) and makes the draw
  uniform over the whole symmetry group.
* **Early stopping**: groups (sample ids) are split into train and validation by
  :func:`grouped_validation_split` (``validation_fraction`` of each class's groups, never a group
  on both sides, checked by :func:`~hybridtmd.splits.check_grouped_split`). After each epoch
  the class-weighted validation loss is computed; the weights of the epoch with the lowest one
  are restored at the end, and training stops after ``patience`` epochs without improvement.
  ``patience=None`` runs all ``epochs`` and still keeps the best epoch (the paper's procedure,
  which kept the weights of the best validation F1/loss epoch). Without ``groups`` every image is
  its own group, which leaks between images of one sample: pass ``groups``.
  ``validation_fraction=0`` trains all ``epochs`` on everything and keeps the last weights.
* **frozen=True** (the paper's "transfer" comparison): only the head is trained; the backbone
  stays in eval mode, so its weights *and* batch-norm statistics are unchanged. The features of
  each (image, dihedral view) are computed once and reused in later epochs (exactly the same
  training, at most 8 backbone passes per image instead of one per epoch).
* **Determinism**: with an integer ``random_state`` two fits on the same machine, device and
  thread count give identical weights: the global torch RNG is forked and seeded for the fit
  (head initialisation, dropout) and restored afterwards, shuffling and augmentation draw from a
  dedicated ``torch.Generator``, and ``torch.use_deterministic_algorithms`` is on (warn-only,
  restored afterwards). ``n_threads`` sets torch's CPU threads during fit/predict.
* **Device**: ``"auto"`` uses CUDA when available, else CPU.

Sequential modality
-------------------
The paper's best fine-tuned model was trained on 2 classes, then continued on 3, 4 and 5 from
the previous weights. ``fit_continue(images, y, groups)`` does this: it keeps
the current network, extends ``classes_`` by the labels of ``y`` not seen before (appended in
sorted order, so ``classes_`` is then in order of appearance, not sorted), copies the output
rows (weights and bias) of the known classes, initialises the rows of the new classes as a fresh
``Linear`` layer would, and trains with a new Adam optimiser, split and early stopping. (The paper
replaced the whole last layer; copying the known rows keeps what was learnt about those classes
and is otherwise the same.) The architecture (backbone, ``hidden``, ``dropout``, ``input_size``)
is the one of the first fit; the training parameters (``epochs``, ``lr``, ``frozen``,
``patience``...) are read again at each call, so they can be changed with ``set_params`` between
stages. Each call appends to ``stages_``. On an unfitted classifier it is ``fit``. Example::

    clf = FineTuneClassifier(random_state=0)
    clf.fit(images[two], y[two], groups[two])
    for subset in (three, four, five):
        clf.fit_continue(images[subset], y[subset], groups[subset])

Cost accounting
---------------
:func:`estimate_flops` counts the floating-point operations of one forward pass with
``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications and convolutions, 2 FLOPs
per multiply-add; element-wise operations are not counted, so it slightly underestimates). A
training step (forward + backward) is taken as :data:`TRAIN_STEP_FLOPS_FACTOR` = 3 forwards.
``fit_flops_`` adds up training steps and validation forwards of the last fit (for
``frozen=True``: the backbone passes actually done plus the head's steps); prediction costs
``flops_per_image_`` per image.

Saved models
------------
``save(directory, key=None)`` writes ``directory/model.pt`` (the network's ``state_dict``, tensors
only, via ``torch.save``) and ``directory/manifest.json`` (format version, constructor parameters,
classes, backbone used and its weights id, input size, feature length, history, stages, versions
of hybridtmd/torch/torchvision/timm) as the hybrid's model directory
(:mod:`hybridtmd.model.persistence`): the SHA-256 of ``model.pt``, one digest over the manifest
(HMAC-SHA256 with ``key`` or ``$HYBRIDTMD_MODEL_KEY``), written whole into a sibling and swapped
in. ``load`` reads every format up to the current one, the tensors with
``torch.load(..., weights_only=True)`` (never unpickles code), rebuilds the architecture without
needing the pretrained weights file for the built-in backbones, and raises
:class:`ModelFileError` naming the file when the manifest is missing, unreadable, edited or
inconsistent, or ``model.pt`` does not match its recorded digest.
"""

from .classifier import BackboneFallbackWarning, FineTuneClassifier
from .network import estimate_flops

__all__ = [
    "BackboneFallbackWarning",
    "FineTuneClassifier",
    "estimate_flops",
]
