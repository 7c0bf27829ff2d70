"""chute: a self-service deployment pipeline (Blubber images, PipelineLib pipelines, deploys, metrics)."""

__version__ = "0.1.0"
