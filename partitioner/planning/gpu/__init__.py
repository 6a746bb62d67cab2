"""GPU planning: a pipeline of stages over the target's GPUs.

`problem` turns the coarsened graph into the solver's numbers, the solvers
choose a stage per block, and `layout` computes the plan from that answer
exactly. `planner.plan_pipeline` runs the three.
"""
