"""`python3 -m artgen`: the same command line as the `artgen` script."""

from artgen.cli import app

if __name__ == "__main__":
    app(prog_name="artgen")
