"""The chain above the stages: the pipeline config, the runner that chains the stages, and the report."""
