import sys

from zimage_ui.cli import main

sys.exit(main())
