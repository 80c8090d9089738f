from django.db import models


class Provider(models.TextChoices):
    AWS = "aws", "AWS"


class ResourceType(models.TextChoices):
    IDC_GROUP = "aws_idc_group", "AWS Identity Center group"
    ACCOUNT = "aws_account", "AWS account"
    IDC_ROLE = "aws_idc_role", "AWS Identity Center role"
    IAM_ROLE = "aws_iam_role", "AWS IAM role"
    EC2_INSTANCE = "aws_ec2_instance", "AWS EC2 instance"
    EKS_CLUSTER = "aws_eks_cluster", "AWS EKS cluster"
    RDS_MYSQL = "aws_rds_mysql", "AWS RDS MySQL instance"
    RDS_POSTGRES = "aws_rds_postgres", "AWS RDS Postgres instance"
    AURORA_MYSQL = "aws_aurora_mysql", "AWS Aurora MySQL cluster"
    AURORA_POSTGRES = "aws_aurora_postgres", "AWS Aurora PostgreSQL cluster"
    ORGANIZATIONAL_UNIT = "aws_ou", "AWS organizational unit"


class RiskSensitivity(models.TextChoices):
    NONE = "none", "None"
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class ReviewerKind(models.TextChoices):
    OWNERS = "owners", "Resource owners"
    MANAGER = "manager", "Requester's manager"
    ADMINS = "admins", "Admins"


class StageMode(models.TextChoices):
    ANY = "any", "Any one reviewer"
    ALL = "all", "All reviewers"


class ExtensionPolicy(models.TextChoices):
    NOT_ALLOWED = "not_allowed", "Extensions not allowed"
    SAME_AS_REQUEST = "same_as_request", "Judged like a new request"
    AUTO_APPROVE = "auto_approve", "Approved automatically up to the maximum duration"


class GrantSource(models.TextChoices):
    REQUEST = "request", "Access request"
    ADMIN = "admin", "Granted by an admin"
    REVIEW = "review", "Access review"
    OBSERVED = "observed", "Observed in AWS"


class GrantStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACTIVE = "active", "Active"
    REVOKING = "revoking", "Revoking"
    REVOKED = "revoked", "Revoked"
    FAILED = "failed", "Failed"


class PropagationStatus(models.TextChoices):
    NOT_STARTED = "not_started", "Not started"
    WAITING_FOR_SUBJECT = "waiting_for_subject", "Waiting for the user's first sign-in"
    IN_PROGRESS = "in_progress", "In progress"
    APPLIED = "applied", "Applied in AWS"
    REMOVED = "removed", "Removed from AWS"
    FAILED = "failed", "Failed"


class GroupSource(models.TextChoices):
    LOCAL = "local", "Portcullis"
    IDP = "idp", "Identity provider"


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    CANCELED = "canceled", "Canceled"
    EXPIRED = "expired", "Expired without a decision"


class RequestKind(models.TextChoices):
    NEW = "new", "New access"
    EXTENSION = "extension", "Extension"


class Decision(models.TextChoices):
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"


class AssignmentStatus(models.TextChoices):
    """Where an assignment's lifecycle stands: what the grant engine has done in AWS, or
    what it still has to do there. Only the transitions on ``Assignment`` move it."""

    ABSENT = "absent", "Not in AWS"
    APPLIED = "applied", "In AWS"
    # In AWS, to be applied again: a re-apply was asked for (an OU's accounts changed, the
    # user's subject was cleared) or an apply over what AWS holds failed and is retried.
    REAPPLY = "reapply", "In AWS, to apply again"
    WAITING_FOR_USER = "waiting_for_user", "Waiting for the user's first sign-in"
    FAILING = "failing", "Failing"


# The statuses in which AWS holds the assignment.
ASSIGNMENT_IN_AWS = (AssignmentStatus.APPLIED, AssignmentStatus.REAPPLY)
