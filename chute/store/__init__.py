"""State in SQL: the data model, migrations, the job queue and the ledger.

Used by the server (and the agent-facing API) only; nothing else imports it.
"""

from .db import Database, chute_home, database_url
from .models import (
    Agent,
    Base,
    Change,
    Deployment,
    DeployRequest,
    Environment,
    Event,
    Image,
    Job,
    LogChunk,
    Project,
    Run,
    Secret,
    StageResult,
    Token,
    WebhookDelivery,
    utcnow,
)

__all__ = [
    "Agent",
    "Base",
    "Change",
    "Database",
    "DeployRequest",
    "Deployment",
    "Environment",
    "Event",
    "Image",
    "Job",
    "LogChunk",
    "Project",
    "Run",
    "Secret",
    "StageResult",
    "Token",
    "WebhookDelivery",
    "chute_home",
    "database_url",
    "utcnow",
]
