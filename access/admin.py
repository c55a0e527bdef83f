"""API keys in the operator console: created with a show-once secret, revoked by an action, never deleted."""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from access.models import ApiKey, Scope


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "expires_at")

    def clean_scopes(self) -> list[str]:
        return sorted(set(self.cleaned_data["scopes"]))

    def clean_expires_at(self) -> datetime | None:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("id", "name", "scopes_display", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("id", "name")
    actions = ("revoke",)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("name", "scopes", "expires_at")
        # secret_hash is never listed.
        return (
            "id",
            "name",
            "scopes",
            "expires_at",
            "created_at",
            "created_by",
            "revoked_at",
            "last_used_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        # Scopes stay editable (every request reads them afresh); revocation goes through the action so it
        # cannot be undone by clearing a date field.
        return ("id", "expires_at", "created_at", "created_by", "revoked_at", "last_used_at")

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    @admin.display(description="scopes")
    def scopes_display(self, key: ApiKey) -> str:
        return ", ".join(key.scopes)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, plaintext = ApiKey.issue(
            obj.name, obj.scopes, expires_at=obj.expires_at, created_by=request.user
        )
        obj.pk = key.pk
        obj.refresh_from_db()
        messages.success(
            request,
            f"API key: {plaintext} — copy it now: it will not be shown again (only its hash is stored).",
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        # Conditional update: a key revoked twice keeps the time of its first revocation.
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        skipped = queryset.count() - revoked
        messages.success(request, f"Revoked {revoked} API key{'s' if revoked != 1 else ''}.")
        if skipped:
            messages.info(request, f"{skipped} already revoked.")
