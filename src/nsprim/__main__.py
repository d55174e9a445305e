import sys

from nsprim.cli import main

sys.exit(main())
