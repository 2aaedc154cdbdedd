"""`ride models`: the models shipped inside the package, what each is for and its measured figures."""

from __future__ import annotations

import argparse
import json

from ..model_zoo import pretrained_models


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `models` subcommand to the `ride` parser's subparsers."""
    p = subparsers.add_parser("models", help="list the shipped models (load one with ride.pretrained(name))",
                              description="Lists the models shipped inside the package: name, what it is, what it "
                                          "is the best choice for and its measured figures. Any command's "
                                          "--checkpoint takes these names.")
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for entry in pretrained_models():
        if args.json:
            print(json.dumps({"name": entry.name, "description": entry.description, "use": entry.use,
                              "source": entry.source, "figures": entry.figures}))
            continue
        print(entry.name)
        print(f"    {entry.description}")
        print(f"    best for: {entry.use}")
        for label, value in entry.figures.items():
            print(f"    {label}: {value}")
    return 0
