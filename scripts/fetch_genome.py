"""Fetch a catalogued genome: `python scripts/fetch_genome.py NAME [--root genomes] [--force] [--verify]`."""

from __future__ import annotations

import argparse
import sys

from seqdiff.dna.fetch import FetchError, fetch_genome, load_catalogue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", nargs="?", help="catalogue entry (omit with --list)")
    parser.add_argument(
        "--root", default="genomes", help="directory holding genomes/<name>/ (default: genomes)"
    )
    parser.add_argument(
        "--catalogue", default=None, help="catalogue YAML (default: the repository's genomes/catalogue.yaml)"
    )
    parser.add_argument("--force", action="store_true", help="fetch again even if verified files exist")
    parser.add_argument("--verify", action="store_true", help="re-hash files already present")
    parser.add_argument("--list", action="store_true", help="list catalogued genomes and exit")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        for name, entry in load_catalogue(args.catalogue).items():
            print(f"{name:14s} {entry['description']}")
        return 0
    try:
        files = fetch_genome(args.name, args.root, args.catalogue, force=args.force, verify=args.verify)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(files.fasta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
