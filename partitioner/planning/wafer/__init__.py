"""Wafer planning: regions of cores on one or more simulated wafer-scale engines.

`regions` sizes the blocks' needs, `split` cuts them across wafers, `layout`
sizes and places each wafer's rectangles (with the floorplan solvers), and
`transfers` lists what crosses the fabric. `planner.plan_wafer` runs them.
"""
