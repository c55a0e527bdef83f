"""API keys in the operator console: created with a show-once secret, revoked by an action, never deleted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from access.models import ApiKey, Scope


class ShowSecretOnceMixin:
    """After "add", render the new credential on a page of its own instead of redirecting with a message:
    a message would carry the plaintext through a cookie or the session table."""

    secret_label = "secret"
    secret_hint = ""

    def remember_secret(self, request: HttpRequest, plaintext: str) -> None:
        request._issued_secret = plaintext  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: str | None = None) -> HttpResponse:
        plaintext = getattr(request, "_issued_secret", None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)  # type: ignore[misc]
        opts = obj._meta
        response = render(
            request,
            "admin/issued_secret.html",
            {
                **self.admin_site.each_context(request),  # type: ignore[attr-defined]
                "title": f"New {self.secret_label}",
                "opts": opts,
                "object": obj,
                "secret": plaintext,
                "secret_label": self.secret_label,
                "hint": self.secret_hint,
                "change_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)]),
            },
        )
        response["Cache-Control"] = "no-store"
        return response


class CredentialForm(forms.ModelForm):
    """What node tokens and API keys share on their add form."""

    def clean_expires_at(self) -> datetime | None:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


# Written when a credential is issued, revoked or used; shown on its page, never edited there.
RECORD_FIELDS = ("created_at", "created_by", "revoked_at", "revoked_by", "last_used_at")


class CredentialAdmin(ShowSecretOnceMixin, admin.ModelAdmin):
    """What the API key and node token admins share: the add form, then a page with the id and the record,
    a filter and an action for revocation, and no deletion."""

    # The add form's fields, shown again (after the id) on the credential's page.
    add_fields: tuple[str, ...] = ()
    # Of those, the ones that cannot change once the credential is issued.
    fixed_fields: tuple[str, ...] = ()
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    actions = ("revoke",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return self.add_fields
        # secret_hash is never listed: even a hash of a bearer secret has no business on a screen.
        return ("id", *self.add_fields, *RECORD_FIELDS)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("id", *self.fixed_fields, *RECORD_FIELDS)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting would drop the trail of who held it; revoking keeps it.
        return False


class ApiKeyForm(CredentialForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "expires_at")

    def clean_scopes(self) -> list[str]:
        return sorted(set(self.cleaned_data["scopes"]))


@admin.register(ApiKey)
class ApiKeyAdmin(CredentialAdmin):
    secret_label = "API key"
    secret_hint = "Send it as: Authorization: Bearer <key>"
    form = ApiKeyForm
    list_display = ("id", "name", "scopes_display", "created_at", "expires_at", "revoked_at", "last_used_at")
    search_fields = ("id", "name")
    add_fields = ("name", "scopes", "expires_at")
    # Scopes stay editable (every request reads them afresh); revocation goes through the action so it
    # cannot be undone by clearing a date field.
    fixed_fields = ("expires_at",)

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
        self.remember_secret(request, plaintext)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = ApiKey.revoke(queryset, _actor(request))
        skipped = queryset.count() - revoked
        messages.success(request, f"Revoked {revoked} API key{'s' if revoked != 1 else ''}.")
        if skipped:
            messages.info(request, f"{skipped} already revoked.")


def _actor(request: HttpRequest) -> str:
    return request.user.get_username() or "admin"
