import sys

from urllm.cli import main

sys.exit(main())
