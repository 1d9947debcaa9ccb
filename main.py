"""The old entry point: ``python main.py VIDEO_ID M3U8_URL [--reset]`` still works.

It is the same as ``cdn-preheat push VIDEO_ID M3U8_URL [--reset]``.
"""

import sys

from cdn_preheat.cli import main

if __name__ == "__main__":
    main(["push", *sys.argv[1:]])
