"""``python -m learnsieve`` is the ``learnsieve`` command."""
import sys

from learnsieve.cli import main

sys.exit(main())
