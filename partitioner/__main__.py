"""``python -m partitioner`` runs the `partition` command."""

from partitioner.cli import main

raise SystemExit(main())
