"""Autoscaling of an OrpheusCluster's workers on queue depth and time to first audio.

`policy` decides (pure), `signals` observes the gateway, `controller` runs one tick against
the cluster, `handlers` is the kopf glue. The simulator that compares policies on synthetic
traces is a benchmark tool: `benchmarks/autoscale_sim.py`.
"""
