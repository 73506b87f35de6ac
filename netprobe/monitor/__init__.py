"""What `netprobe watch` keeps and serves between runs: the state (last result, a timeline of
changes), Prometheus metrics, the live page and the webhook. The loop that fills it lives in
``netprobe.orchestration.watch``.
"""
