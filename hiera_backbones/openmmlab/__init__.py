"""What the MMDetection and MMAction2 adapters share, by concern (none of these modules is
needed to ``import hiera_backbones``; each imports mmengine where it needs it):

* :mod:`.args`: task checks of a backbone's arguments (image vs video model, ``input_size``).
* :mod:`.backbone`: the one constructor of the registered backbones (arguments -> model).
* :mod:`.loading`: ``init_cfg=dict(type='Pretrained')`` for our backbones (through
  :func:`hiera_backbones.checkpoints.load_pretrained`) and safe loading of mmengine's own
  checkpoints on torch >= 2.6.
* :mod:`.optim`: the layer-wise lr decay optimizer-wrapper constructor (rule:
  :mod:`hiera_backbones.layer_decay`).
* :mod:`.cli`: command-line and process plumbing of ``tools/mm_train.py``, ``tools/mm_test.py``,
  ``tools/mma_train.py`` (incl. CPU-only distributed runs).
"""
