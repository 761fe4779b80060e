"""Every backend beside dwx's own on the same inverse problems: renderers and physics engines, one table each.

Runs :func:`backends_render.render_rows` (soft_mesh and Mitsuba 3 on the Spot cow: forward and forward+backward
time at 64 and 128 px, and a 100-step single-view fit judged by the task's hard renderer) and
:func:`backends_physics.physics_rows` (physics=rigid and physics=newton on the four rigid scenes, mass_spring and
warp_springs on the cloth: rollout time, forward+backward time, and a physical_params fit). A backend whose extra
is missing is left out, said on stderr. Every figure is measured in this run, on one torch thread.

    python benchmarks/backends.py [--write docs/backends.md]      # ~3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from backends_physics import physics_markdown, physics_rows
from backends_render import render_markdown, render_rows
from machine import machine_line, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="also write the tables, date, command and machine to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the runs' setting for these small ops (Dr.Jit follows torch's thread count)
    started = time.perf_counter()
    text = "\n".join([
        "# Backends side by side",
        "",
        "## Renderers (`python benchmarks/backends_render.py`: what each column measures)",
        "",
        render_markdown(render_rows()),
        "",
        "## Physics engines (`python benchmarks/backends_physics.py`: what each column measures)",
        "",
        physics_markdown(physics_rows()),
    ])
    minutes = (time.perf_counter() - started) / 60
    machine = machine_line()
    print(f"{text}\n\nMachine: {machine}; {minutes:.1f} min")
    if args.write:
        write_report(args.write, text, machine, f" ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
