from django.db import connection
from django.db.utils import Error as DatabaseError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

HealthSerializer = inline_serializer(name="Health", fields={"status": serializers.CharField()})


@extend_schema(
    operation_id="healthz",
    summary="Liveness and database check",
    responses={200: HealthSerializer, 503: HealthSerializer},
    tags=["health"],
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def healthz(request: Request) -> Response:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return Response({"status": "unavailable"}, status=503)
    return Response({"status": "ok"})


ReadinessSerializer = inline_serializer(name="Readiness", fields={
    "status": serializers.ChoiceField(choices=["ready", "unavailable"]),
    "checks": serializers.DictField(child=serializers.CharField(),
                                    help_text="database, migrations and broker: ok, or what is wrong."),
})


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return "unreachable"
    return "ok"


def _migrations() -> str:
    """Every migration of the code applied to the database (a new release whose migrations have not run yet is
    not ready)."""
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:
        return "unreachable"
    return "ok" if not plan else f"{len(plan)} not applied"


def _broker() -> str | None:
    """The Celery broker answers (None without one: tasks run in-process)."""
    from django.conf import settings

    if not settings.CELERY_BROKER_URL:
        return None
    from kombu import Connection

    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=1) as broker:
            broker.ensure_connection(max_retries=1, timeout=1)
    except Exception:  # noqa: BLE001 - any failure to connect means not ready
        return "unreachable"
    return "ok"


@extend_schema(
    operation_id="readyz",
    summary="Readiness: the database answers, its migrations are applied, the broker answers (when configured)",
    responses={200: ReadinessSerializer, 503: ReadinessSerializer},
    tags=["health"],
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def readyz(request: Request) -> Response:
    database = _database()
    checks = {"database": database, "migrations": _migrations() if database == "ok" else "unknown"}
    broker = _broker()
    if broker is not None:
        checks["broker"] = broker
    ready = all(value == "ok" for value in checks.values())
    return Response({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
