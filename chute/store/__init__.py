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
    LoginSession,
    Project,
    RoleBinding,
    Run,
    StageResult,
    Token,
    User,
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
    "LoginSession",
    "Project",
    "RoleBinding",
    "Run",
    "StageResult",
    "Token",
    "User",
    "WebhookDelivery",
    "chute_home",
    "database_url",
    "utcnow",
]
