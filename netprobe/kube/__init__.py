"""The cluster as a source of truth: read nodes, Calico's Typha pods and the apiserver's
endpoints through the Kubernetes API and turn them into a netprobe inventory.

``build`` is pure (API-shaped dicts in, an inventory document out); ``client`` is the thin shell
around the official ``kubernetes`` client that fetches those dicts.
"""
