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
    DeployResult,
    Environment,
    Event,
    Image,
    Job,
    LogChunk,
    LoginSession,
    PatchDelivery,
    Project,
    RoleBinding,
    Run,
    RunResult,
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
    "DeployResult",
    "Deployment",
    "Environment",
    "Event",
    "Image",
    "Job",
    "LogChunk",
    "LoginSession",
    "PatchDelivery",
    "Project",
    "RoleBinding",
    "Run",
    "RunResult",
    "StageResult",
    "Token",
    "User",
    "WebhookDelivery",
    "chute_home",
    "database_url",
    "utcnow",
]
