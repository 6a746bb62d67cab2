"""Transform passes over the IR: resolve dims, infer shapes, fold constants, coarsen."""
