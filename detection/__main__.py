import sys

from detection.cli import main

sys.exit(main())
