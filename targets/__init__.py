"""Hardware descriptions (GPU clusters, wafer grids, presets) and the cost model.

This layer imports nothing else of ours.
"""
