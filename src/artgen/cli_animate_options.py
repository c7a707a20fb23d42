"""The typer options `artgen animate` and `artgen restyle` share (cli_animate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

OutputOption = Annotated[Path, typer.Option("--output", "-o", help="MP4 file to write.")]
SizeOption = Annotated[
    tuple[int, int] | None, typer.Option(metavar="W H", help="Width and height in pixels.")
]
IterationsOption = Annotated[
    int | None, typer.Option(help="Optimisation steps of frame 0 (default 100).")
]
PerFrameOption = Annotated[
    int | None, typer.Option(help="Optimisation steps of every later frame (default 10).")
]
SeedOption = Annotated[int | None, typer.Option(help="Random seed; random when left out.")]
PromptAtOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="FRAME:PROMPTS",
        help='From frame FRAME on, the prompts become PROMPTS, e.g. "40:a stormy sea" '
        "(repeatable).",
    ),
]
ModelOption = Annotated[str | None, typer.Option(help="VQGAN model name (see `models list`).")]
ClipOption = Annotated[
    list[str] | None,
    typer.Option(metavar="NAME", help="CLIP model name (repeatable; losses are summed)."),
]
StepSizeOption = Annotated[float | None, typer.Option(help="Learning rate (default 0.1).")]
CutnOption = Annotated[int | None, typer.Option(help="Cutouts per iteration (default 64).")]
FastOption = Annotated[
    bool | None,
    typer.Option(
        "--fast/--reference", help="Engine path (default fast on CUDA, reference on CPU)."
    ),
]
DeviceOption = Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default auto).")]
FramesDirOption = Annotated[
    Path | None, typer.Option(help="Also write every frame as DIR/frame-00000.png.")
]


def _schedule(what: str, example: str) -> Any:
    """A keyframe schedule option: Deforum's syntax, shown in the help with an example."""
    return typer.Option(help=f'{what}, keyframed, linear in between: "{example}".')


ZoomOption = Annotated[
    str | None, _schedule("Zoom per frame (above 1 zooms in; default 1)", "0:(1.02), 60:(1.0)")
]
AngleOption = Annotated[
    str | None,
    _schedule("Rotation per frame in degrees, counter-clockwise (default 0)", "0:(0), 30:(0.5)"),
]
TranslationXOption = Annotated[
    str | None, _schedule("Shift right per frame in pixels (default 0)", "0:(0), 30:(2)")
]
TranslationYOption = Annotated[
    str | None, _schedule("Shift down per frame in pixels (default 0)", "0:(-1)")
]
