"""``python -m cdn_preheat`` runs the CLI."""

from cdn_preheat.cli import main

main()
