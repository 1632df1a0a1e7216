import sys

from logd.cli import main

sys.exit(main())
