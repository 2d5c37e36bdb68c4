#!/usr/bin/env python
"""Convert checkpoints for our backbones and frameworks; same as the ``hiera-convert`` command.

    python tools/convert.py SRC DST --to {backbone,detectron2,mmdet,mmaction} [--from FORMAT]
                            [--keep-head] [--input-size N ...] [--force] [--verify]
"""

import sys

from hiera_backbones.checkpoints.cli import main

if __name__ == "__main__":
    sys.exit(main())
