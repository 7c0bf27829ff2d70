"""The agent: claims jobs from a chute server over HTTP and runs them with the runner.

``chute agent --server URL --token T`` runs one on any machine; ``chute serve``
starts an embedded one (the same code, talking HTTP to its own server).
"""

from .client import AgentClient
from .worker import Worker, start_embedded_agent

__all__ = ["AgentClient", "Worker", "start_embedded_agent"]
