"""The API's router: DRF's ``SimpleRouter`` with path converters, this API's URL names, and singletons.

- A collection (``register``): ``<prefix>/`` (list, create) named ``<basename>``; an item
  ``<prefix>/<converter:lookup>/`` (retrieve, update, partial_update, destroy) named ``item_name``;
  ``@action``s ``<prefix>/<url_path>/`` named ``<basename>-<url_name>`` and ``<prefix>/<lookup>/<url_path>/``
  named ``<item_name>-<url_name>``. The item's converter and kwarg are the viewset's ``lookup_value_converter``
  (``str`` by default; ``path`` lets an id hold "/") and ``lookup_url_kwarg``.
- A singleton (``register_singleton``): a resource without an id (``account/``): ``<prefix>/`` named
  ``<basename>``, its GET, PUT, PATCH, POST and DELETE mapped to retrieve, update, partial_update, create and
  destroy."""

from __future__ import annotations

from typing import Any

from django.urls import path
from rest_framework.routers import DynamicRoute, Route, SimpleRouter

ITEM_METHODS = {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
SINGLETON_METHODS = {"get": "retrieve", "put": "update", "patch": "partial_update", "post": "create",
                     "delete": "destroy"}


class BillingRouter(SimpleRouter):
    # No view-name suffixes ("List", "Instance"): an OPTIONS answer names the view as it always has.
    routes = [
        Route(url="{prefix}/", mapping={"get": "list", "post": "create"}, name="{basename}", detail=False,
              initkwargs={}),
        DynamicRoute(url="{prefix}/{url_path}/", name="{basename}-{url_name}", detail=False, initkwargs={}),
        Route(url="{prefix}/{lookup}/", mapping=ITEM_METHODS, name="{item_name}", detail=True, initkwargs={}),
        DynamicRoute(url="{prefix}/{lookup}/{url_path}/", name="{item_name}-{url_name}", detail=True,
                     initkwargs={}),
    ]
    singleton_route = Route(url="{prefix}/", mapping=SINGLETON_METHODS, name="{basename}", detail=True,
                            initkwargs={})

    def __init__(self) -> None:
        super().__init__(trailing_slash=True, use_regex_path=False)
        self.item_names: dict[str, str] = {}
        self.singletons: set[str] = set()

    def register(  # type: ignore[override]
        self, prefix: str, viewset: Any, basename: str, *, item_name: str | None = None
    ) -> None:
        """``item_name``: the URL name of the item route (``billing-reservation``), when it is not the basename's."""
        super().register(prefix, viewset, basename)
        if item_name:
            self.item_names[basename] = item_name

    def register_singleton(self, prefix: str, viewset: Any, basename: str) -> None:
        super().register(prefix, viewset, basename)
        self.singletons.add(basename)

    def get_lookup_regex(self, viewset: Any, lookup_prefix: str = "") -> str:
        converter = getattr(viewset, "lookup_value_converter", None) or "str"
        kwarg = getattr(viewset, "lookup_url_kwarg", None) or getattr(viewset, "lookup_field", "pk")
        return f"<{converter}:{lookup_prefix}{kwarg}>"

    def get_urls(self) -> list:
        urls = []
        for prefix, viewset, basename in self.registry:
            singleton = basename in self.singletons
            routes = [self.singleton_route] if singleton else self.get_routes(viewset)
            lookup = self.get_lookup_regex(viewset)
            for route in routes:
                mapping = self.get_method_map(viewset, route.mapping)
                if not mapping:
                    continue
                if route.detail and "{lookup}" in route.url and basename not in self.item_names:
                    raise ValueError(f"{viewset.__name__} has item routes: register it with an item_name")
                url = route.url.format(prefix=prefix, lookup=lookup)
                name = route.name.format(basename=basename, item_name=self.item_names.get(basename))
                view = viewset.as_view(mapping, **route.initkwargs, basename=basename, detail=route.detail)
                urls.append(path(url, view, name=name))
        return urls
