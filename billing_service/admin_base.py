"""What every app's Django admin shares."""

from __future__ import annotations

from django.contrib import admin

from billing_service.db_router import LaggingChangelistMixin


class ReadOnlyAdmin(LaggingChangelistMixin, admin.ModelAdmin):
    """A page that shows rows and never writes them: they change through the services (an action, or the API).
    Its list may read from a replica (``LaggingChangelistMixin``)."""

    def has_add_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False

    def has_change_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False
