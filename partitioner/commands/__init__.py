"""One module per CLI command; each has ``add_arguments(parser)`` and ``run(args) -> int``.

Commands parse flags, call the library (`planning`, `plan`, `executor`,
`simulate`), print tables and write files through `files.Outputs` (checked,
staged, all or nothing). Nothing outside `commands` and `cli` imports them.
"""
