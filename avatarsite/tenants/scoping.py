"""One place that walls staff off by tenant, for every ModelAdmin and every REST viewset.

Staff see and change only the rows of the tenants they are members of (superusers: all), with
the Django permission their role there grants (avatarsite/tenants/roles.py). A row of another
tenant answers exactly like a missing one: 404. Choices of related rows (a guardrail's
character, a filter's list of characters) offer only the user's tenants' rows.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models
from django.forms import ModelChoiceField, ModelMultipleChoiceField
from django.http import Http404, HttpRequest
from rest_framework import permissions
from rest_framework.exceptions import ValidationError as RestValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request

from .models import Tenant
from .roles import roles_of


def visible_tenant_ids(user: Any) -> list[int] | None:
    """The tenants whose rows `user` may see; None: all of them (superusers)."""
    if getattr(user, "is_superuser", False):
        return None
    return list(roles_of(user))


def is_tenant_owned(model: type[models.Model]) -> bool:
    return any(
        f.name == "tenant" and f.related_model is Tenant for f in model._meta.concrete_fields
    )


def scoped(queryset: models.QuerySet[Any], user: Any) -> models.QuerySet[Any]:
    """`queryset` narrowed to the rows `user` may see (rows of models without a tenant: all)."""
    ids = visible_tenant_ids(user)
    if ids is None:
        return queryset
    if queryset.model is Tenant:
        return queryset.filter(pk__in=ids)
    if not is_tenant_owned(queryset.model):
        return queryset
    return queryset.filter(tenant_id__in=ids)


def creation_tenant(user: Any, chosen: Tenant | None) -> Tenant:
    """Where a new row goes: the tenant chosen (one of the user's), else the user's only one."""
    ids = visible_tenant_ids(user)
    if chosen is not None:
        if ids is not None and chosen.pk not in ids:
            raise Http404
        return chosen
    if ids is None:
        return Tenant.default()
    if len(ids) == 1:
        return Tenant.objects.get(pk=ids[0])
    raise RestValidationError({"tenant": "You belong to several tenants: name one (its slug)."})


def _object_permission(request: HttpRequest, action: str, obj: Any) -> bool:
    meta = obj._meta
    return request.user.has_perm(f"{meta.app_label}.{action}_{meta.model_name}", obj)


class TenantScopedFormMixin:
    """Related-row choices limited to the user's tenants (admins and inlines alike)."""

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        related = db_field.related_model
        if isinstance(related, type) and (related is Tenant or is_tenant_owned(related)):
            base = kwargs.get("queryset") or related._default_manager.all()
            kwargs["queryset"] = scoped(base, request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(
        self, db_field: models.ManyToManyField[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelMultipleChoiceField[Any] | None:
        related = db_field.related_model
        if isinstance(related, type) and is_tenant_owned(related):
            base = kwargs.get("queryset") or related._default_manager.all()
            kwargs["queryset"] = scoped(base, request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]


class TenantRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A filter by a related row (e.g. character) listing only the user's tenants' rows."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[Any]:
        ids = visible_tenant_ids(request.user)
        related = field.related_model
        if ids is None or not (related is Tenant or is_tenant_owned(related)):
            return super().field_choices(field, request, model_admin)
        limit = {"pk__in": ids} if related is Tenant else {"tenant_id__in": ids}
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(include_blank=False, ordering=ordering, limit_choices_to=limit)


class TenantScopedInline(TenantScopedFormMixin, admin.options.InlineModelAdmin):
    """Base of every inline: the parent is already the user's, its children follow."""

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        return scoped(super().get_queryset(request), request.user)


class TenantScopedAdmin(TenantScopedFormMixin, admin.ModelAdmin):
    """Base of every ModelAdmin of tenant-owned rows."""

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        return scoped(super().get_queryset(request), request.user)

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404  # unknown or another tenant's: the same answer
        return obj

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        filters: list[Any] = []
        for entry in super().get_list_filter(request):
            field = None
            if isinstance(entry, str) and "__" not in entry:
                field = self.model._meta.get_field(entry)
            filters.append(
                (entry, TenantRelatedFieldListFilter)
                if field is not None and field.is_relation and field.many_to_one
                else entry
            )
        if self._several_tenants(request):
            filters.insert(0, ("tenant", TenantRelatedFieldListFilter))
        return filters

    def _several_tenants(self, request: HttpRequest) -> bool:
        ids = visible_tenant_ids(request.user)
        return is_tenant_owned(self.model) and (ids is None or len(ids) > 1)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        # The tenant is chosen on creation by staff of several tenants, shown after.
        if not self._several_tenants(request):
            return fieldsets
        if any("tenant" in (opts.get("fields") or ()) for _, opts in fieldsets):
            return fieldsets
        (name, first), *rest = fieldsets
        return [(name, {**first, "fields": ("tenant", *first.get("fields", ()))}), *rest]

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        exclude = list(super().get_exclude(request, obj) or ())
        if is_tenant_owned(self.model) and not self._several_tenants(request):
            exclude.append("tenant")
        return exclude

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and is_tenant_owned(self.model):
            readonly.append("tenant")  # rows never move between tenants
        return readonly

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        if obj is not None or not is_tenant_owned(self.model):
            return form
        user = request.user

        class NewRowOfTheTenant(form):  # type: ignore[misc, valid-type]
            """Puts a new row in its tenant before validation, so rules that depend on the
            tenant (unique names, secret references) are checked against the right one."""

            def _post_clean(self) -> None:
                if "tenant" not in self.fields:
                    parent_field = getattr(self.instance, "tenant_parent", None)
                    parent = self.cleaned_data.get(parent_field) if parent_field else None
                    self.instance.tenant = (
                        parent.tenant if parent is not None else creation_tenant(user, None)
                    )
                super()._post_clean()
                if "tenant" not in self.fields:
                    self._validate_tenant_constraints()

            def _validate_tenant_constraints(self) -> None:
                # Django skips constraints on fields missing from the form; the tenant is set.
                instance = self.instance
                exclude = self._get_validation_exclusions() - {"tenant"}
                for constraint in instance._meta.constraints:
                    if "tenant" in getattr(constraint, "fields", ()):
                        try:
                            constraint.validate(type(instance), instance, exclude=exclude)
                        except ValidationError as exc:
                            self._update_errors(exc)

        return NewRowOfTheTenant

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None or request.user.is_superuser:
            return super().has_view_permission(request, obj)
        return _object_permission(request, "view", obj) or self.has_change_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        if obj is None or request.user.is_superuser or not allowed:
            return allowed
        return _object_permission(request, "change", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        if obj is None or request.user.is_superuser or not allowed:
            return allowed
        return _object_permission(request, "delete", obj)


class TenantModelPermissions(permissions.DjangoObjectPermissions):
    """Staff only, with the model permission for the method (reading needs `view`), checked
    against the row's tenant."""

    perms_map = {
        **permissions.DjangoObjectPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_staff) and super().has_permission(
            request, view
        )


class TenantScopedViewSetMixin(GenericAPIView):
    """First base of every staff REST viewset."""

    permission_classes = [TenantModelPermissions]

    def get_queryset(self) -> models.QuerySet[Any]:
        return scoped(super().get_queryset(), self.request.user)

    def creation_tenant(self) -> Tenant:
        slug = self.request.query_params.get("tenant")
        chosen = Tenant.objects.filter(slug=slug).first() if slug else None
        if slug and chosen is None:
            raise Http404
        return creation_tenant(self.request.user, chosen)

    def perform_create(self, serializer: Any) -> None:
        serializer.save(tenant=self.creation_tenant())


class TenantScopedTabularInline(TenantScopedInline, admin.TabularInline):
    pass


class TenantScopedStackedInline(TenantScopedInline, admin.StackedInline):
    pass
