"""Flex Template entry point: the template passes its parameters as --name=value flags, which
are exactly `learnsieve curate`'s flags (runner flags included)."""
import sys

from learnsieve.cli import main

if __name__ == "__main__":
    sys.exit(main(["curate", *sys.argv[1:]]))
