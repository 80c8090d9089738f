"""`manage.py standin_change <what>`: a change in the stand-in AWS, delivered as CloudTrail
would deliver it through EventBridge to the app's SQS queue (see
demo.standin_cloudtrail). Never touches real AWS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from aws_integration.models import AwsApp
from demo.aws_app import DEMO_APP_NAME
from demo.standin_cloudtrail import StandIn, StandInChangeError, require_standin


class Command(BaseCommand):
    help = (
        "Makes a change in the stand-in AWS (launch or terminate an instance, tag one, create "
        "an IAM role, add someone to an Identity Center group) and sends its CloudTrail event "
        "to the app's SQS queue, as an EventBridge rule would. Only with AWS_ENDPOINT_URL set."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--app",
            default="",
            help=f"The AWS app whose organization to change (default: “{DEMO_APP_NAME}”, "
            "else the only AWS app with a queue).",
        )
        what = parser.add_subparsers(dest="what", required=True, metavar="<what>")

        run = what.add_parser("run-instance", help="Launch an EC2 instance.")
        run.add_argument("--account", default="", help="Account ID (default: first member).")
        run.add_argument("--region", default="", help="Region (default: the app's first).")
        run.add_argument("--name", default="", help="Its Name tag.")

        terminate = what.add_parser("terminate-instance", help="Terminate an EC2 instance.")
        terminate.add_argument("--instance-id", required=True)
        terminate.add_argument("--account", default="", help="Default: from the inventory.")
        terminate.add_argument("--region", default="", help="Default: from the inventory.")

        tag = what.add_parser("tag-instance", help="Set tags on an EC2 instance.")
        tag.add_argument("--instance-id", required=True)
        tag.add_argument(
            "--tag", action="append", default=[], metavar="KEY=VALUE", help="Repeatable."
        )
        tag.add_argument("--account", default="", help="Default: from the inventory.")
        tag.add_argument("--region", default="", help="Default: from the inventory.")

        role = what.add_parser("create-role", help="Create an IAM role.")
        role.add_argument("--name", required=True)
        role.add_argument("--account", default="", help="Account ID (default: first member).")

        member = what.add_parser("add-group-member", help="Add a user to an Identity Center group.")
        member.add_argument("--group", required=True, help="The group's display name or id.")
        member.add_argument("--user", required=True, help="The user's user name or email.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            require_standin()
            standin = StandIn(self._app(options["app"]))
            change = self._change(standin, options)
            message_id = standin.send(change)
        except StandInChangeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(change.summary))
        self.stdout.write(
            f"Sent its {change.event['detail']['eventName']} event to "
            f"{standin.app.sqs_queue_url} (message {message_id}). The task cluster's poller "
            "picks it up within a minute; watch the app's sync runs in the admin."
        )

    def _app(self, name: str) -> AwsApp:
        if name:
            app = AwsApp.objects.filter(name=name).first()
            if app is None:
                raise CommandError(f"There is no AWS app named “{name}”.")
            return app
        app = AwsApp.objects.filter(name=DEMO_APP_NAME).first()
        if app is not None:
            return app
        with_queue = list(AwsApp.objects.exclude(sqs_queue_url="")[:2])
        if len(with_queue) != 1:
            raise CommandError(
                "Say which AWS app with --app NAME: there is no demo app and "
                f"{'no' if not with_queue else 'more than one'} app with a queue."
            )
        return with_queue[0]

    def _change(self, standin: StandIn, options: dict[str, Any]) -> Any:
        what = options["what"]
        account = options.get("account") or None
        region = options.get("region") or None
        if what == "run-instance":
            return standin.run_instance(account, region, options["name"])
        if what == "terminate-instance":
            return standin.terminate_instance(options["instance_id"], account, region)
        if what == "tag-instance":
            return standin.tag_instance(
                options["instance_id"], _tags(options["tag"]), account, region
            )
        if what == "create-role":
            return standin.create_role(options["name"], account)
        return standin.add_group_member(options["group"], options["user"])


def _tags(values: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for value in values:
        key, sep, tag_value = value.partition("=")
        if not sep or not key:
            raise StandInChangeError(f"“{value}” is not a tag: write KEY=VALUE.")
        tags[key] = tag_value
    return tags
