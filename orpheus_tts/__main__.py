import sys

from orpheus_tts.cli import main

sys.exit(main())
