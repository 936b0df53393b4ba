"""``infer deploy``: a profile as Helm values for vLLM's production-stack chart, a Dockerfile and
compose file, or a systemd unit. Pure functions from a loaded profile to files and notes; the
command line writes them."""
