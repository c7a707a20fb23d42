"""Engine benchmark script: the same as `artgen bench` (see `--help`).

python3 benchmarks/bench_engine.py --sizes 64 --cutn 8 --device cpu
"""

import sys

from artgen.cli import app

if __name__ == "__main__":
    app(args=["bench", *sys.argv[1:]], prog_name="bench_engine.py")
