"""``python -m rivet``."""

from rivet.cli import main

main()
