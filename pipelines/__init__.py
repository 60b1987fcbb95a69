"""The foundation every stage builds on: configs and flags, data, models, metrics, artifacts, inference and
training machinery. It imports no stage.

Importing this package makes the Hugging Face libraries offline by default (set HF_HUB_OFFLINE=0 to allow hub
downloads) and keeps their caches inside the project, unless the user set them already.
"""

from pipelines.environment import configure_environment

configure_environment()
