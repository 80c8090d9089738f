"""Real-time sync: CloudTrail events from an SQS queue, parsed, mapped to the objects they
touch, and those objects refreshed from AWS."""
