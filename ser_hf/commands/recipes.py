"""`ser-hf recipes [DEST] [--list]`: copy the shipped recipes (YAML configs, run scripts) out of the
installed package, so a wheel install has the same `recipes/` a clone has."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def recipes_dir() -> Path:
    """The recipes folder: ``ser_hf/recipes`` (inside a wheel; a symlink to ``recipes/`` in a clone)."""
    import ser_hf

    package = Path(ser_hf.__file__).resolve().parent
    for candidate in (package / "recipes", package.parent / "recipes"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the ser-hf recipes are not installed with this package")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ser-hf recipes", description=__doc__)
    parser.add_argument("dest", nargs="?", default="recipes", help="folder to copy the recipes into (default: ./recipes)")
    parser.add_argument("--list", action="store_true", help="print the recipe files instead of copying them")
    parser.add_argument("--force", action="store_true", help="overwrite files that already exist in DEST")
    args = parser.parse_args(argv)
    source = recipes_dir()
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if args.list:
        print("\n".join(str(f) for f in files))
        return 0
    existing = [f for f in files if (Path(args.dest) / f).exists()]
    if existing and not args.force:
        print(f"ser-hf recipes: {len(existing)} files already in {args.dest} (e.g. {existing[0]}); use --force", file=sys.stderr)
        return 2
    for relative in files:
        target = Path(args.dest) / relative
        os.makedirs(target.parent, exist_ok=True)
        shutil.copyfile(source / relative, target)
    print(f"copied {len(files)} recipe files to {args.dest}")
    return 0
